package meshtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
)

// TestBrowserRefreshOnExpiring: the demo page's client (callmesh.js, with a
// token function) answers expiring with a refresh at once. Dev tokens live
// 4 s and the warning comes 3 s before the close, so the client's own
// schedule (at least 5 s after a token arrives) would come too late: only
// the refresh on expiring keeps the session. Well past the first token's
// close, the page has had no reconnect and no second welcome.
func TestBrowserRefreshOnExpiring(t *testing.T) {
	chromium := findChromium(t)
	m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) {
		c.Demo = true
		c.DevTokens = &gateway.MintConfig{Alg: "HS256", Secret: Secret}
		c.DevTokenTTL = 4 * time.Second
		c.Auth.Leeway = 0
		c.ExpiryWarning = 3 * time.Second
		c.ICEServers = nil
	}})
	s := startBrowser(t, chromium)

	alice := s.open(t, "alice", m.Gateways[0].HTTP.URL+"/", laptop)
	alice.connect(t, "alice")
	alice.waitFor(t, "listeners on demo.mesh", `(() => {
		const m = demo.mesh;
		window.seen = {t0: Date.now(), expiring: 0, states: [], welcomes: 0};
		m.addEventListener("expiring", () => seen.expiring++);
		m.addEventListener("state", () => seen.states.push(m.state));
		m.addEventListener("welcome", () => seen.welcomes++);
		return true;
	})()`)
	// 5 s after connecting, the first token (at most 4 s) has expired. A
	// deadline to outlive, not a timing asserted.
	raw := alice.waitFor(t, "5 s", `Date.now() - seen.t0 > 5000 &&
		JSON.stringify({...seen, state: demo.mesh && demo.mesh.state})`)
	var got struct {
		Expiring int
		States   []string
		Welcomes int
		State    string
	}
	var js string
	if err := json.Unmarshal(raw, &js); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatal(err)
	}
	t.Logf("after the first token's expiry: %s", js)
	if got.Expiring == 0 || got.State != "open" || len(got.States) != 0 || got.Welcomes != 0 {
		t.Fatalf("the session did not survive its first token: %s", js)
	}
}
