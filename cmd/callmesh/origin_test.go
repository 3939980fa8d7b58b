package main

import (
	"reflect"
	"slices"
	"testing"
)

// TestOriginWildcardOnlyInDev: by default no browser origin but the
// gateway's own is allowed; only dev, and only when none is configured,
// allows any origin ("*").
func TestOriginWildcardOnlyInDev(t *testing.T) {
	cfg := mustLoad(t, nil, nil)
	if got := cfg.gatewayConfig(nil, nil).OriginPatterns; len(got) != 0 {
		t.Errorf("default gateway origin patterns %q, want none", got)
	}

	if _, _, err := devAuth(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.gatewayConfig(nil, nil).OriginPatterns; !reflect.DeepEqual(got, []string{"*"}) {
		t.Errorf("dev origin patterns %q, want [*]", got)
	}

	cfg = mustLoad(t, []string{"--http.origin_patterns", "app.example.com"}, nil)
	if _, _, err := devAuth(cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.HTTP.OriginPatterns; slices.Contains(got, "*") || !reflect.DeepEqual(got, []string{"app.example.com"}) {
		t.Errorf("dev with configured origins: %q, want [app.example.com]", got)
	}
}
