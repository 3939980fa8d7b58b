package meshtest

import (
	"testing"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/turnserver"
)

// startRelayTURN starts the built-in TURN server on loopback for the test
// and returns it with the gateway settings that hand it out (with each
// user's credentials) and ice.transport_policy relay, so that peers connect
// through its relays only. Loopback is among its allowed peers: the other
// peer's relay is on loopback too.
func startRelayTURN(t *testing.T) (*turnserver.Server, func(*gateway.Config)) {
	t.Helper()
	const secret = "relay-turn-secret-0123456789"
	cfg := turnserver.DefaultConfig()
	cfg.Secret, cfg.RelayIP, cfg.UDPAddr, cfg.TCPAddr = secret, "127.0.0.1", "127.0.0.1:0", ""
	cfg.AllowPeerCIDRs = []string{"127.0.0.0/8"}
	cfg.Logger = quietLogger()
	srv, err := turnserver.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, func(c *gateway.Config) {
		c.ICEServers = []gateway.ICEServerConfig{{URLs: []string{"turn:" + srv.Addrs["udp"].String() + "?transport=udp"}, Secret: secret}}
		c.ICETransportPolicy = "relay"
	}
}
