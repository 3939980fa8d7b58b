package meshtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
)

// TestBrowserTokenSignIn: the demo page of a gateway that hands out no dev
// tokens (http.demo outside callmesh dev) says how to sign in: paste a
// JWT, minted by your app or by `callmesh token --user NAME --rooms '*'`,
// whose command it shows. It never asks for a dev token. A token not
// signed with the gateway's key is refused with a message that says so;
// pasting one the command would mint connects as its user, who may then
// join any room.
func TestBrowserTokenSignIn(t *testing.T) {
	chromium := findChromium(t)
	m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) {
		c.Demo = true // and no DevTokens
		c.ICEServers = nil
	}})
	s := startBrowser(t, chromium)
	alice := s.open(t, "alice", m.Gateways[0].HTTP.URL+"/", laptop)

	alice.waitFor(t, "the token sign-in: #token, no #user", `document.body.dataset.signin === "token" && `+
		usable("token")+` && document.getElementById("user").getClientRects().length === 0 &&
		document.getElementById("dev-signin-note").getClientRects().length === 0`)
	alice.waitFor(t, "the sign-in explanation with the command, in view", `(() => {
		const help = document.getElementById("signin-help");
		const r = help.getBoundingClientRect();
		return help.getClientRects().length > 0 && r.bottom <= innerHeight &&
			/hands out no tokens/.test(help.textContent) &&
			document.getElementById("token-command").textContent === "callmesh token --user NAME --rooms '*'";
	})()`)

	alice.typeInto(t, "token", "hello")
	alice.click(t, "connect")
	alice.waitFor(t, "an error asking for a JWT", `!document.getElementById("error").hidden &&
		/Paste a JWT/.test(document.getElementById("error").textContent)`)

	forged, err := gateway.MintGrants(gateway.MintConfig{Alg: "HS256", Secret: "another-secret-another-secret-0123456789"},
		"mallory", time.Hour, gateway.Grants{Rooms: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	alice.typeInto(t, "token", forged)
	alice.click(t, "connect")
	alice.waitFor(t, "the forged token refused, naming the gateway's key", `!document.getElementById("error").hidden &&
		/Could not sign in as mallory/.test(document.getElementById("error").textContent) &&
		/this gateway's key/.test(document.getElementById("error").textContent) &&
		document.getElementById("status").textContent === "Not connected"`)

	// What `callmesh token --user alice --rooms '*'` mints with the gateway's key.
	token, err := gateway.MintGrants(gateway.MintConfig{Alg: "HS256", Secret: Secret}, "alice", time.Hour,
		gateway.Grants{Rooms: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	alice.typeInto(t, "token", token)
	alice.click(t, "connect")
	alice.waitFor(t, `#status "connected as alice"`, `document.getElementById("status").textContent.includes("connected as alice")`)
	alice.joinRoom(t, "standup")
	alice.waitFor(t, "no request for a dev token", fmt.Sprintf(
		`performance.getEntriesByType("resource").every(e => !e.name.includes(%q))`, "/dev/token"))
}
