package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// fioJob is one fio invocation on one file.
type fioJob struct {
	rw      string // read or randread
	bs      string
	direct  bool
	engine  string // psync or libaio
	iodepth int    // for libaio; 0 leaves fio's 1
	jobs    int    // 0 or 1: one job
	runtime time.Duration
}

// fioResult is fio's summary of all of a job's processes.
type fioResult struct {
	ioBytes int64
	bw      float64 // bytes per second
	iops    float64
}

// args is the fio command line that reads file.
func (j fioJob) args(file string) []string {
	args := []string{
		"--name=bench", "--filename=" + file, "--readonly",
		"--rw=" + j.rw, "--bs=" + j.bs, "--ioengine=" + j.engine,
		"--direct=" + map[bool]string{false: "0", true: "1"}[j.direct],
		// fio's default drops the file's pages before it starts. Cold runs
		// drop all caches themselves, and a warm run should see what an
		// application re-reading the file sees, page cache included.
		"--invalidate=0",
		"--output-format=json",
	}
	if j.iodepth > 1 {
		args = append(args, "--iodepth="+strconv.Itoa(j.iodepth))
	}
	if j.jobs > 1 {
		args = append(args, "--numjobs="+strconv.Itoa(j.jobs), "--group_reporting")
	}
	if j.runtime > 0 {
		args = append(args, "--time_based", "--runtime="+strconv.Itoa(int(j.runtime/time.Second))+"s")
	}
	return args
}

// runFio runs j on file. A job that is not time-based must read the whole
// file, size bytes: fewer means a read came back short.
func runFio(ctx context.Context, file string, size int64, j fioJob) (fioResult, error) {
	cmd := exec.CommandContext(ctx, "fio", j.args(file)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fioResult{}, fmt.Errorf("fio %s: %w: %s", strings.Join(cmd.Args[1:], " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	r, err := parseFio(stdout.Bytes())
	if err != nil {
		return fioResult{}, fmt.Errorf("fio %s: %w", strings.Join(cmd.Args[1:], " "), err)
	}
	if j.runtime == 0 && r.ioBytes != size {
		return fioResult{}, fmt.Errorf("fio %s: read %d bytes of %d", strings.Join(cmd.Args[1:], " "), r.ioBytes, size)
	}
	return r, nil
}

// parseFio reads fio's JSON output, which fio may precede with notes.
func parseFio(out []byte) (fioResult, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return fioResult{}, fmt.Errorf("no JSON in the output: %q", out)
	}
	var doc struct {
		Jobs []struct {
			Error int `json:"error"`
			Read  struct {
				IOBytes int64   `json:"io_bytes"`
				BW      float64 `json:"bw_bytes"`
				IOPS    float64 `json:"iops"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out[i:], &doc); err != nil {
		return fioResult{}, fmt.Errorf("decode the JSON output: %w", err)
	}
	// group_reporting sums all processes into one entry.
	if len(doc.Jobs) != 1 {
		return fioResult{}, fmt.Errorf("%d jobs in the output, want 1", len(doc.Jobs))
	}
	j := doc.Jobs[0]
	if j.Error != 0 {
		return fioResult{}, fmt.Errorf("the job failed with error %d", j.Error)
	}
	return fioResult{ioBytes: j.Read.IOBytes, bw: j.Read.BW, iops: j.Read.IOPS}, nil
}
