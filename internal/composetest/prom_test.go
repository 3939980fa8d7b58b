//go:build compose

package composetest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// promTargets is what Prometheus says of its targets: job → instance →
// health ("up", "down", "unknown").
func (s *stack) promTargets() (map[string]map[string]string, error) {
	var got struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string
				Health string
			}
		}
	}
	if err := s.promGet("/api/v1/targets", &got); err != nil {
		return nil, err
	}
	jobs := map[string]map[string]string{}
	for _, t := range got.Data.ActiveTargets {
		job := t.Labels["job"]
		if jobs[job] == nil {
			jobs[job] = map[string]string{}
		}
		jobs[job][t.Labels["instance"]] = t.Health
	}
	return jobs, nil
}

// promQuery runs an instant query and returns its result vector.
func (s *stack) promQuery(expr string) ([]promSample, error) {
	var got struct {
		Status string
		Error  string
		Data   struct {
			Result []promSample
		}
	}
	if err := s.promGet("/api/v1/query?query="+url.QueryEscape(expr), &got); err != nil {
		return nil, err
	}
	if got.Status != "success" {
		return nil, fmt.Errorf("%s: %s", expr, got.Error)
	}
	return got.Data.Result, nil
}

// promSample is one sample of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  [2]any // time, value as a string
}

func (s *stack) promGet(path string, v any) error {
	code, body := get(s.promURL + path)
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return fmt.Errorf("%s: %d %.200q: %w", path, code, body, err)
	}
	return nil
}

// checkScrapes waits until Prometheus scrapes, and finds up, exactly the
// running containers of each job's service.
func checkScrapes(t *testing.T, s *stack, want map[string]int) {
	t.Helper()
	ports := map[string]int{"gateway": 8080, "router": 8081, "turn": 8478}
	waitFor(t, startWait, "Prometheus scraping every gateway, router and TURN server", func() error {
		jobs, err := s.promTargets()
		if err != nil {
			return err
		}
		for job, n := range want {
			running := s.running(job)
			if len(running) != n {
				return fmt.Errorf("%d %s containers running, want %d", len(running), job, n)
			}
			for _, c := range running {
				instance := c.IP + ":" + strconv.Itoa(ports[job])
				if h := jobs[job][instance]; h != "up" {
					return fmt.Errorf("job %s: %s (%s) is %q; targets %v", job, instance, c.Name, h, jobs[job])
				}
			}
			if len(jobs[job]) != n {
				return fmt.Errorf("job %s has %d targets, want %d: %v", job, len(jobs[job]), n, jobs[job])
			}
		}
		return nil
	})
}

// promEquals checks that expr has one sample, equal to want.
func promEquals(s *stack, expr string, want float64) error {
	got, err := promValue(s, expr)
	if err == nil && got != want {
		err = fmt.Errorf("%s = %v, want %v", expr, got, want)
	}
	return err
}

// promAtLeast checks that expr has one sample, at least want.
func promAtLeast(s *stack, expr string, want float64) error {
	got, err := promValue(s, expr)
	if err == nil && got < want {
		err = fmt.Errorf("%s = %v, want at least %v", expr, got, want)
	}
	return err
}

func promValue(s *stack, expr string) (float64, error) {
	res, err := s.promQuery(expr)
	if err != nil {
		return 0, err
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("%s: %d samples", expr, len(res))
	}
	v, _ := res[0].Value[1].(string)
	return strconv.ParseFloat(v, 64)
}

// checkDashboardQueries runs every query of the Grafana dashboard on the
// stack's Prometheus: each must be valid PromQL over what it scrapes.
func checkDashboardQueries(t *testing.T, s *stack) {
	t.Helper()
	exprs := dashboardExprs(t)
	for _, expr := range exprs {
		if _, err := s.promQuery(strings.ReplaceAll(expr, "$__rate_interval", "1m")); err != nil {
			t.Errorf("dashboard query refused by Prometheus: %v", err)
		}
	}
	t.Logf("%d dashboard queries ran", len(exprs))
}
