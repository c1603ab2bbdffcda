package mount

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// Metrics reads the samples a weedfuse mount serves at http://addr/metrics
// (its -metrics.address), by their exposition names, labels included
// (`weedfuse_cache_hits_total{tier="disk"}`).
func Metrics(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}
