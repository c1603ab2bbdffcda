package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dashboardFile is the Grafana dashboard shipped for these metrics.
const dashboardFile = "../../contrib/grafana/weedfuse.json"

// exportedNames are the sample names of every exposition: a histogram's
// _bucket, _sum and _count included.
func exportedNames(t *testing.T) map[string]bool {
	names := map[string]bool{}
	for _, text := range [][]byte{exposition(t, testMount(t).Registry()), exposition(t, testSidecar(t).Registry())} {
		for _, l := range strings.Split(string(text), "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			names[strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	return names
}

// queries returns every PromQL string in a dashboard: targets' expr and
// template variables' query.
func queries(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "query" && strings.Contains(s, "(")) {
				out = append(out, s)
				continue
			}
			out = append(out, queries(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, queries(x)...)
		}
	}
	return out
}

var (
	// Label matchers, ranges and strings hold no metric names.
	promqlNoise = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]|"[^"]*"`)
	promqlIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// Names of ours, and of the Go and process collectors we register.
	metricPrefix = regexp.MustCompile(`^(weedfuse|weedrdma|go|process)_`)
)

// TestDashboardNamesExportedMetrics checks that every expression of the
// Grafana dashboard names only metrics that weedfuse or weedrdma export, so
// a renamed metric cannot leave a silently empty panel.
func TestDashboardNamesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash any
	require.NoError(t, json.Unmarshal(raw, &dash))
	exported := exportedNames(t)
	qs := queries(dash)
	require.NotEmpty(t, qs)
	for _, q := range qs {
		var names []string
		for _, id := range promqlIdent.FindAllString(promqlNoise.ReplaceAllString(q, " "), -1) {
			if metricPrefix.MatchString(id) {
				names = append(names, id)
			}
		}
		if assert.NotEmpty(t, names, "no metric named in %q", q) {
			for _, n := range names {
				assert.True(t, exported[n], "%s (in %q) is not exported", n, q)
			}
		}
	}
}

// TestDashboardPromQL parses every expression with promtool, as recording
// rules, with Grafana's variables replaced by values.
func TestDashboardPromQL(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; .ci/install installs it)")
	}
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash any
	require.NoError(t, json.Unmarshal(raw, &dash))
	vars := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	for i, q := range queries(dash) {
		if strings.HasPrefix(q, "label_values(") {
			continue // Grafana's, not PromQL
		}
		expr, err := json.Marshal(vars.Replace(q)) // a JSON string is a YAML string
		require.NoError(t, err)
		fmt.Fprintf(&rules, "  - record: dashboard:expr%d\n    expr: %s\n", i, expr)
	}
	file := filepath.Join(t.TempDir(), "rules.yml")
	require.NoError(t, os.WriteFile(file, []byte(rules.String()), 0o644))
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s\n%s", out, rules.String())
}
