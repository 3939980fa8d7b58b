package composetest

import (
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// dashboardFile is the Grafana dashboard docker-compose.yml provisions.
const dashboardFile = "../../deploy/grafana/callmesh.json"

// dashboard is what the tests read of a Grafana dashboard.
type dashboard struct {
	Inputs     []any `json:"__inputs"` // only in the "export for sharing" form
	UID        string
	Title      string
	Templating struct {
		List []struct{ Name, Type, Query string }
	}
	Panels []panel
}

type panel struct {
	ID         int
	Type       string
	Title      string
	Datasource *datasourceRef
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		Expr       string
		Datasource *datasourceRef
	}
	Panels []panel // a collapsed row's
}

type datasourceRef struct{ Type, UID string }

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels is every panel, rows' panels included.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs is every PromQL query of the dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, p := range allPanels(readDashboard(t).Panels) {
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	return exprs
}

// The dashboard is the raw JSON that Grafana's file provisioning loads:
// no __inputs, a data source variable of type prometheus, and every panel
// and query on that variable, so it works with whatever Prometheus data
// source a Grafana has.
func TestDashboardIsProvisionable(t *testing.T) {
	d := readDashboard(t)
	if b, _ := os.ReadFile(dashboardFile); strings.Contains(string(b), "${DS_") {
		t.Errorf("%s names a data source input (${DS_…}): the export-for-sharing form, which provisioning cannot fill", dashboardFile)
	}
	if d.Inputs != nil {
		t.Errorf("the dashboard has __inputs: the export-for-sharing form, which provisioning does not fill")
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for a stable URL", d.UID, d.Title)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		hasVar = hasVar || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
	}
	if !hasVar {
		t.Errorf("no variable datasource of type datasource, query prometheus: %+v", d.Templating.List)
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		onVar := func(ds *datasourceRef) bool { return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}" }
		if !onVar(p.Datasource) {
			t.Errorf("panel %q: data source %+v, want the variable ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			if !onVar(q.Datasource) || strings.TrimSpace(q.Expr) == "" {
				t.Errorf("panel %q: query %q on %+v", p.Title, q.Expr, q.Datasource)
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	// Panels lie on Grafana's 24-column grid without overlapping.
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range allPanels(d.Panels) {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v off the 24-column grid", p.Title, g)
		}
	cells:
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at (%d, %d)", p.Title, other, x, y)
					break cells
				}
				taken[cell{x, y}] = p.Title
			}
		}
	}
}

// Every metric the dashboard queries is one callmesh exports (a metric
// name in its Go sources: gateways', routers', the TURN server's), or
// Prometheus's own `up`. A renamed metric would leave a panel silently
// empty.
func TestDashboardMetricsExist(t *testing.T) {
	defined := map[string]bool{}
	name := regexp.MustCompile(`Name: *"(callmesh_[a-z_]+)"`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !defined["callmesh_gateway_connections"] || !defined["callmesh_router_requests_total"] {
		t.Fatalf("found only %d metrics in the sources: %v", len(defined), slices.Sorted(maps.Keys(defined)))
	}
	used := regexp.MustCompile(`\bcallmesh_[a-z_]+`)
	seen := map[string]bool{}
	for _, expr := range dashboardExprs(t) {
		for _, m := range used.FindAllString(expr, -1) {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && defined[b] {
					base = b
				}
			}
			if !defined[base] {
				t.Errorf("the dashboard queries %s, which callmesh does not export", m)
			}
			seen[base] = true
		}
	}
	// Each component has panels.
	for _, prefix := range []string{"callmesh_gateway_", "callmesh_router_", "callmesh_turn_"} {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(seen)), func(m string) bool { return strings.HasPrefix(m, prefix) }) {
			t.Errorf("no panel shows a %s* metric", prefix)
		}
	}
}

// Prometheus scrapes the jobs the dashboard's queries name (up{job=…}),
// each on the port its component serves /metrics on in docker-compose.yml.
func TestPrometheusJobs(t *testing.T) {
	b, err := os.ReadFile("../../deploy/compose/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName      string `yaml:"job_name"`
			DNSSDConfigs []struct {
				Names []string
				Type  string
				Port  int
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"gateway": 8080, "router": 8081, "turn": 8478} // CALLMESH_*_ADDR in docker-compose.yml
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for job, port := range want {
		found := false
		for _, sc := range cfg.ScrapeConfigs {
			if sc.JobName != job {
				continue
			}
			found = true
			if len(sc.DNSSDConfigs) != 1 || !slices.Equal(sc.DNSSDConfigs[0].Names, []string{job}) ||
				sc.DNSSDConfigs[0].Type != "A" || sc.DNSSDConfigs[0].Port != port {
				t.Errorf("job %s: %+v; want the service %s's replicas by DNS, port %d", job, sc.DNSSDConfigs, job, port)
			}
		}
		if !found {
			t.Errorf("prometheus.yml has no job %s", job)
		}
		if !strings.Contains(string(compose), "0.0.0.0:"+strconv.Itoa(port)) {
			t.Errorf("docker-compose.yml has no listener on 0.0.0.0:%d for %s", port, job)
		}
	}
	for _, expr := range dashboardExprs(t) {
		for _, m := range regexp.MustCompile(`job="([a-z]+)"`).FindAllStringSubmatch(expr, -1) {
			if _, ok := want[m[1]]; !ok {
				t.Errorf("dashboard query %q names job %s, which prometheus.yml lacks", expr, m[1])
			}
		}
	}
}
