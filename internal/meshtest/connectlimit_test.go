package meshtest

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/callmesh/callmesh/gateway"
)

// expectRateLimited fails unless a dial was refused before the upgrade
// with 429 and the body and Retry-After of PROTOCOL.md §1.
func expectRateLimited(t *testing.T, what string, resp *http.Response, err error) {
	t.Helper()
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("%s: %v (%v), want 429", what, resp, err)
	}
	if problem := checkRateLimited(resp); problem != "" {
		t.Fatalf("%s: %s", what, problem)
	}
}

// Connect and resume attempts are limited per source address (before the
// token is looked at) and per user (after), with 429 before the upgrade. A
// refill of one a minute keeps the buckets empty for the test.
func TestConnectRateLimits(t *testing.T) {
	const perMinute = 1.0 / 60

	t.Run("per address", func(t *testing.T) {
		m := Start(t, Options{Gateways: 1, Routers: 1, ResumeGrace: Wait, Gateway: func(c *gateway.Config) {
			c.AddrConnectRate, c.AddrConnectBurst = perMinute, 3
			c.UserConnectRate = 0
		}})
		m.Dial(0, "ann")
		m.Dial(0, "ben")
		cat := m.Dial(0, "cat")
		// Every test client has the same address: a fourth user is refused...
		_, resp, err := m.DialRaw(0, m.Token("dan"), "")
		expectRateLimited(t, "a fourth user from the address", resp, err)
		// ...before the token is looked at...
		_, resp, err = m.DialRaw(0, "not-a-token", "")
		expectRateLimited(t, "no valid token from the address", resp, err)
		// ...and a resume is an attempt like any other.
		cat.Drop()
		_, resp, err = m.DialRaw(0, m.Token("cat"), "resume="+url.QueryEscape(cat.Welcome.Resume))
		expectRateLimited(t, "a resume from the address", resp, err)
	})

	t.Run("per user", func(t *testing.T) {
		m := Start(t, Options{Gateways: 1, Routers: 1, ResumeGrace: Wait, Gateway: func(c *gateway.Config) {
			c.UserConnectRate, c.UserConnectBurst = perMinute, 2
		}})
		alice := m.Dial(0, "alice")
		alice.Drop()
		alice = m.Resume(0, alice) // resumes count: this is her second attempt
		alice.Drop()
		_, resp, err := m.DialRaw(0, m.Token("alice"), "resume="+url.QueryEscape(alice.Welcome.Resume))
		expectRateLimited(t, "alice's third resume", resp, err)
		_, resp, err = m.DialRaw(0, m.Token("alice"), "")
		expectRateLimited(t, "alice's new connection", resp, err)
		// Another user from the same address is not limited by alice's bucket.
		m.Dial(0, "bob")
		m.Dial(0, "bob")
	})
}
