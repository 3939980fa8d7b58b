package meshtest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// Browser origins: with the default config (no OriginPatterns) a gateway
// upgrades only same-origin browser requests (and non-browser ones, which
// send no Origin); any other origin is refused with 403 before the upgrade,
// with a valid token and all. A gateway whose OriginPatterns lists a host
// pattern (coder/websocket: path.Match against the origin's host) accepts
// the origins it matches and no other. A call between two other users goes
// on unaffected throughout.
func TestOriginAllowList(t *testing.T) {
	m := Start(t, Options{Gateways: 2, Routers: 1})
	listed := m.GatewayConfig()
	listed.OriginPatterns = []string{"*.example"}
	m.opts.Gateway = func(c *gateway.Config) { *c = listed }
	m.AddGateway() // gateway 2

	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	host := func(g int) string {
		u, err := url.Parse(m.Gateways[g].HTTP.URL)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host
	}
	for _, tc := range []struct {
		name   string
		gw     int
		origin string
		ok     bool
	}{
		{"default: foreign origin", 0, "https://evil.example", false},
		{"default: foreign origin, other gateway", 1, "https://evil.example", false},
		{"default: same origin", 0, "http://" + host(0), true},
		{"listed: matching origin", 2, "https://evil.example", true},
		{"listed: matching origin, other scheme", 2, "http://app.example", true},
		{"listed: * spans dots", 2, "https://a.b.example", true},
		{"listed: longer host", 2, "https://evil.example.com", false},
		{"listed: bare domain", 2, "https://example", false},
		{"listed: with a port", 2, "https://evil.example:8443", false},
		{"listed: same origin", 2, "http://" + host(2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := m.For(t).DialHeader(tc.gw, m.Token("mallory"), "", http.Header{"Origin": {tc.origin}})
			if !tc.ok {
				if err == nil {
					t.Fatalf("Origin %s upgraded on gateway %d", tc.origin, tc.gw)
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("Origin %s: response %v (%v), want 403", tc.origin, resp, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Origin %s refused on gateway %d: %v (%v)", tc.origin, tc.gw, err, resp)
			}
			if c.User != "mallory" {
				t.Fatalf("welcome for %q", c.User)
			}
			c.Drop()
		})
	}

	// The call between alice and bob carries on as if nothing happened.
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(`{"candidate":"a"}`)})
	if s := bob.Expect(messages.TypeSignal); s.Call != call || s.From != "alice" || string(s.Data) != `{"candidate":"a"}` {
		t.Fatalf("bob got %s", describe(s))
	}
	bob.Do(messages.TypeHangup, call)
	alice.ExpectEnded(call, messages.ReasonHangup)
	m.Barrier(alice)
	m.Barrier(bob)
}

// The origin is checked before the token: a browser page of a foreign
// origin learns nothing about tokens (403, whatever the token), its own
// origin without a token gets 401. Both answers have a JSON body.
func TestOriginBeforeToken(t *testing.T) {
	m := Start(t, Options{Gateways: 1, Routers: 1})
	u, err := url.Parse(m.Gateways[0].HTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, origin, token string
		status              int
		code                string
	}{
		{"foreign origin, no token", "https://evil.example", "", http.StatusForbidden, messages.CodeForbidden},
		{"foreign origin, bad token", "https://evil.example", "not-a-token", http.StatusForbidden, messages.CodeForbidden},
		{"foreign origin, not a URL", "::", "", http.StatusForbidden, messages.CodeForbidden},
		{"own origin, no token", "http://" + u.Host, "", http.StatusUnauthorized, messages.CodeUnauthorized},
		{"own origin in capitals, no token", "http://" + strings.ToUpper(u.Host), "", http.StatusUnauthorized, messages.CodeUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := m.For(t).DialHeader(0, tc.token, "", http.Header{"Origin": {tc.origin}})
			if err == nil || resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("response %v (%v), want %d", resp, err, tc.status)
			}
			var body struct{ Code string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Code != tc.code {
				t.Fatalf("body code %q (%v), want %q", body.Code, err, tc.code)
			}
		})
	}
}
