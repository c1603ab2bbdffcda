package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFuseCommandReportsFailure runs `weedfuse fuse` as mount.fuse3 would,
// against a filer that is not there: the daemonizing command must not
// claim success, and must pass on the mount's error.
func TestFuseCommandReportsFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(dir, 0o755))
	start := time.Now()
	out, err := exec.CommandContext(ctxT(t, time.Minute), weedfuseBin, "fuse", dir, "-o", "rw,filer=127.0.0.1:1,filer.startTimeout=1ns,_netdev").CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output:\n%s", out)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, string(out), "127.0.0.1:1", "the child's error names the filer")
	assert.Contains(t, string(out), "the mount did not come up")
	assert.Empty(t, daemonsOf(dir))
	t.Logf("failed after %v:\n%s", time.Since(start), out)
}
