package meshtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// shortToken mints a token for user that expires in ttl (exp has whole
// seconds: it may be up to a second sooner), and returns its exp.
func shortToken(t *testing.T, user string, ttl time.Duration) (string, time.Time) {
	t.Helper()
	tok, err := gateway.Mint(gateway.MintConfig{Alg: "HS256", Secret: Secret}, user, ttl)
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	return tok, claims.ExpiresAt.Time
}

// expectExpiring expects expiring and returns its expires_in_ms, which must
// be positive and at most warning.
func expectExpiring(t *testing.T, c *Client, warning time.Duration) int64 {
	t.Helper()
	e := c.Expect(messages.TypeExpiring)
	var d messages.Expiring
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatalf("%s: expiring data %s: %v", c, e.Data, err)
	}
	if d.ExpiresInMS <= 0 || d.ExpiresInMS > warning.Milliseconds() {
		t.Fatalf("%s: expires_in_ms = %d, want 1..%d", c, d.ExpiresInMS, warning.Milliseconds())
	}
	return d.ExpiresInMS
}

// expectOnlyClosed expects the server to close c with code before sending
// it any other frame.
func expectOnlyClosed(t *testing.T, c *Client, code websocket.StatusCode) {
	t.Helper()
	select {
	case e := <-c.frames:
		t.Fatalf("%s: expected close %d, got %s", c, code, describe(e))
	case <-c.closed:
		select {
		case e := <-c.frames:
			t.Fatalf("%s: expected close %d, got %s", c, code, describe(e))
		default:
		}
		if got := websocket.CloseStatus(c.err); got != code {
			t.Fatalf("%s: closed with %d (%v), want %d", c, got, c.err, code)
		}
	case <-time.After(Wait):
		t.Fatalf("%s: still open after %v", c, Wait)
	}
}

// A session whose token runs out is warned with expiring, once, and then
// closed with 4002: ExpiryWarning before the close when the token has more
// left than that, at once (right after welcome) when it has less.
func TestTokenExpiryWarning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		warning time.Duration
	}{
		{"warned before the close", time.Second}, // 3 s token: the warning timer fires
		{"warned at once", time.Minute},          // 3 s token: less than the warning is left
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each subtest waits out a token on its own mesh
			m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) {
				c.Auth.Leeway = 0
				c.ExpiryWarning = tc.warning
			}})
			tok, _ := shortToken(t, "alice", 3*time.Second)
			alice, _, err := m.DialRaw(0, tok, "")
			if err != nil {
				t.Fatal(err)
			}
			expectExpiring(t, alice, tc.warning)
			expectOnlyClosed(t, alice, messages.CloseTokenExpired)
		})
	}

	// ExpiryWarning 0 sends no warning: the close alone.
	t.Run("no warning", func(t *testing.T) {
		t.Parallel()
		m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) {
			c.Auth.Leeway = 0
			c.ExpiryWarning = 0
		}})
		tok, _ := shortToken(t, "alice", 2*time.Second)
		alice, _, err := m.DialRaw(0, tok, "")
		if err != nil {
			t.Fatal(err)
		}
		expectOnlyClosed(t, alice, messages.CloseTokenExpired)
	})
}

// A session that refreshes its token on expiring stays open past the old
// tokens' expiry, and its call goes on: signal is still relayed both ways.
func TestRefreshOnExpiringKeepsCall(t *testing.T) {
	m := Start(t, Options{Gateways: 2, Routers: 1, Gateway: func(c *gateway.Config) {
		c.Auth.Leeway = 0 // the default one-minute warning: a 3 s token is warned at once
	}})
	tok, exp := shortToken(t, "alice", 3*time.Second)
	alice, _, err := m.DialRaw(0, tok, "")
	if err != nil {
		t.Fatal(err)
	}
	bob := m.Dial(1, "bob")
	expectExpiring(t, alice, time.Minute)

	call := Establish(alice, bob)
	refresh := func(id, token string) {
		alice.Send(&messages.Envelope{Type: messages.TypeRefresh, ID: id, Data: json.RawMessage(`{"token":"` + token + `"}`)})
	}
	refresh("r1", m.Token("mallory"))
	alice.ExpectError("r1", messages.CodeForbidden)
	// A refresh with another short token is warned at once, before its ack.
	short, exp2 := shortToken(t, "alice", 3*time.Second)
	refresh("r2", short)
	expectExpiring(t, alice, time.Minute)
	alice.ExpectAck("r2")
	refresh("r3", m.Token("alice")) // an hour
	alice.ExpectAck("r3")

	// Let both short tokens' close times pass (a deadline to outlive, not a
	// timing asserted), then prove the session and its call are intact.
	last := exp
	if exp2.After(last) {
		last = exp2
	}
	time.Sleep(time.Until(last) + 500*time.Millisecond)
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(`{"candidate":"a"}`)})
	if s := bob.Expect(messages.TypeSignal); s.Call != call || s.From != "alice" || string(s.Data) != `{"candidate":"a"}` {
		t.Fatalf("bob got %s", describe(s))
	}
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(`{"candidate":"b"}`)})
	if s := alice.Expect(messages.TypeSignal); s.Call != call || s.From != "bob" || string(s.Data) != `{"candidate":"b"}` {
		t.Fatalf("alice got %s", describe(s))
	}
	// Nothing else reached alice: no second warning, no close.
	m.Barrier(alice)
	m.Barrier(bob)
}
