package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprofSwitch: the profiles are served only with debug.pprof on, and
// the component's own paths are served either way.
func TestPprofSwitch(t *testing.T) {
	own := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(withPprof(own, on))
		get := func(path string) (int, string) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("pprof %v: /healthz %d %q", on, code, body)
		}
		code, body := get("/debug/pprof/")
		if on && (code != http.StatusOK || !strings.Contains(body, "goroutine")) {
			t.Errorf("pprof on: /debug/pprof/ %d", code)
		}
		if !on && code != http.StatusNotFound {
			t.Errorf("pprof off: /debug/pprof/ %d, want 404", code)
		}
		if code, _ := get("/debug/pprof/heap"); on && code != http.StatusOK {
			t.Errorf("pprof on: /debug/pprof/heap %d", code)
		}
		srv.Close()
	}
}
