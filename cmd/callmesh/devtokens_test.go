package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// A gateway with http.dev_tokens says at start, at warn, that anyone can be
// anyone; its /dev/token mints tokens it accepts, and its demo page signs in
// by name. Without the key, /dev/token does not exist and the page asks for
// a token.
func TestGatewayDevTokens(t *testing.T) {
	nats := newNATSLater(t)
	nats.start(t)
	r := run(t, nil, "router", "--nats.url", nats.URL(), "--router.http_addr", "")
	secret := "--jwt.secret=" + strings.Repeat("s", 32)
	on := run(t, gatewayListening, "gateway", "--nats.url", nats.URL(), "--http.addr", "127.0.0.1:0", secret,
		"--http.dev_tokens=true", "--http.demo=true", "--dev.token_ttl=5m", "--http.drain_timeout=0s")
	off := run(t, gatewayListening, "gateway", "--nats.url", nats.URL(), "--http.addr", "127.0.0.1:0", secret,
		"--http.demo=true", "--gateway.name=other", "--http.drain_timeout=0s")
	on.waitHealth(t, http.StatusOK, "ok\n")
	off.waitHealth(t, http.StatusOK, "ok\n")
	on.waitLog(t, `level=WARN msg="`+devTokensWarning+`" token_ttl=5m0s`)
	if strings.Contains(off.stderr.String(), "dev_tokens") {
		t.Errorf("a gateway without http.dev_tokens warns about them:\n%s", off.stderr.String())
	}

	code, body := get(on.base + "/dev/token?user=alice")
	if code != http.StatusOK {
		t.Fatalf("/dev/token: %d %s", code, body)
	}
	var minted struct {
		User      string `json:"user"`
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(body), &minted); err != nil || minted.User != "alice" || minted.ExpiresIn != 300 {
		t.Fatalf("/dev/token answered %s (%v)", body, err)
	}
	// The token is good on every gateway of the mesh: they share jwt.*.
	for _, gw := range []*component{on, off} {
		if user := dial(t, strings.TrimPrefix(gw.base, "http://"), minted.Token).user; user != "alice" {
			t.Errorf("%s: welcome for %q, want alice", gw.base, user)
		}
	}

	if code, _ := get(off.base + "/dev/token?user=alice"); code != http.StatusNotFound {
		t.Errorf("/dev/token without http.dev_tokens: %d, want 404", code)
	}
	if _, page := get(on.base + "/"); !strings.Contains(page, `data-signin="dev"`) {
		t.Errorf("demo page with dev tokens does not sign in by name")
	}
	if _, page := get(off.base + "/"); !strings.Contains(page, `data-signin="token"`) {
		t.Errorf("demo page without dev tokens does not ask for a token")
	}
	on.stop(t)
	off.stop(t)
	r.stop(t)
}
