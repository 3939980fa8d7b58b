package meshtest

import (
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// A user's connections are capped across the mesh (the newest is closed
// with 4004); a gateway's are capped before the upgrade (503).
func TestConnectionLimits(t *testing.T) {
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.MaxConnsPerUser = 2 }})
	m.Dial(0, "dora")
	m.Dial(1, "dora")
	third, _, err := m.DialRaw(0, m.Token("dora"), "")
	if err == nil {
		t.Fatalf("third connection got a welcome: %+v", third.Welcome)
	}
	if got := websocket.CloseStatus(err); got != messages.CloseTooManyConns {
		t.Fatalf("third connection: %v, want close %d", err, messages.CloseTooManyConns)
	}
	m.Dial(1, "eli") // other users are unaffected

	full := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) { c.MaxConns = 1 }})
	full.Dial(0, "first")
	_, resp, err := full.DialRaw(0, full.Token("second"), "")
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection to a full gateway: %v %v", resp, err)
	}
}
