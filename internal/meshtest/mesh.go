// Package meshtest runs a whole callmesh mesh inside a test: an embedded
// NATS server with JetStream (or a cluster of them), gateways on real
// loopback listeners, routers, and real WebSocket clients. Nothing is mocked.
package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/router"
)

// Secret is the HS256 secret of every mesh's tokens.
const Secret = "meshtest-secret-meshtest-secret-0123456789"

// Options shapes a mesh; zero fields take test-friendly defaults.
type Options struct {
	Gateways    int           // default 2
	Routers     int           // default 2
	RingTimeout time.Duration // default 30s
	ResumeGrace time.Duration // default 300ms
	// Cluster, when 2 or more, runs that many NATS nodes as one cluster
	// instead of a single server. Gateway i then connects to node i%n and
	// router j to node (j+1)%n, so that with 3 nodes the first router is
	// on gateway 1's node, the second on gateway 2's, and none on gateway
	// 0's; the buckets get min(n, 3) replicas.
	Cluster int
	// RoleInboxes gives the routers' NATS connections the inbox prefix
	// RouterInbox and the gateways' GatewayInbox, so that a tap on the
	// server can tell whose request a message is by its reply subject
	// (traffic_test.go).
	RoleInboxes bool
	// Gateway and Router, when set, adjust each component's config.
	Gateway func(*gateway.Config)
	Router  func(*router.Config)
}

// NoInviteLimit lifts the per-user invite rate, for tests and benchmarks
// that make many calls between the same users quickly.
func NoInviteLimit(c *gateway.Config) { c.InviteRate, c.InviteBurst = 1e6, 1e6 }

// NoRateLimits lifts the message, byte and invite rates, for benchmarks
// that measure how fast one connection can go.
func NoRateLimits(c *gateway.Config) {
	NoInviteLimit(c)
	c.MessageRate, c.MessageBurst = 1e6, 1e6
	c.ByteRate, c.ByteBurst = 1e12, 1<<40
}

// Mesh is a running mesh.
type Mesh struct {
	t        testing.TB
	opts     Options
	NATS     *server.Server // Nodes[0]
	Nodes    []*server.Server
	Gateways []*Gateway
	Routers  []*router.Router
	nc       *nats.Conn // the test's own connection
	names    messages.Names
	metrics  *prometheus.Registry // the routers' metrics
}

// Gateway is one running gateway and its listener.
type Gateway struct {
	Server *gateway.Server
	HTTP   *httptest.Server
	NC     *nats.Conn
	// Node is the index in Mesh.Nodes of the NATS node NC connected to
	// first (a reconnect may take it to another).
	Node int
	// URL is the WebSocket URL of /ws.
	URL     string
	metrics prometheus.Gatherer
}

// Start runs a mesh for the duration of t.
func Start(t testing.TB, opts Options) *Mesh {
	t.Helper()
	if opts.Gateways == 0 {
		opts.Gateways = 2
	}
	if opts.Routers == 0 {
		opts.Routers = 2
	}
	if opts.RingTimeout == 0 {
		opts.RingTimeout = 30 * time.Second
	}
	if opts.ResumeGrace == 0 {
		opts.ResumeGrace = 300 * time.Millisecond
	}
	names, _ := messages.NewNames(messages.DefaultPrefix)
	m := &Mesh{t: t, opts: opts, names: names, metrics: prometheus.NewRegistry()}
	if opts.Cluster >= 2 {
		m.Nodes = natstest.Cluster(t, opts.Cluster)
	} else {
		m.Nodes = []*server.Server{natstest.Server(t)}
	}
	m.NATS = m.Nodes[0]
	m.nc = m.Connect("test")
	for range opts.Routers {
		m.AddRouter()
	}
	for range opts.Gateways {
		m.AddGateway()
	}
	return m
}

// For returns a view of the mesh whose helpers report to t (a subtest).
func (m *Mesh) For(t testing.TB) *Mesh {
	sub := *m
	sub.t = t
	return &sub
}

// Connect opens a NATS connection to the mesh's server (the first node of a
// cluster), closed with the test.
func (m *Mesh) Connect(name string) *nats.Conn {
	return natstest.Connect(m.t, m.NATS, name)
}

// ConnectNode opens a NATS connection to node i%len(Nodes), closed with the test.
func (m *Mesh) ConnectNode(i int, name string) *nats.Conn {
	return natstest.Connect(m.t, m.Nodes[i%len(m.Nodes)], name)
}

// Inbox prefixes of the components' connections with Options.RoleInboxes.
const (
	RouterInbox  = "_INBOX_router"
	GatewayInbox = "_INBOX_gateway"
)

// connectRole opens component connection name (a role: "router" or
// "gateway") to node i%len(Nodes), with its role's inbox prefix when
// Options.RoleInboxes is set.
func (m *Mesh) connectRole(i int, name, inbox string) *nats.Conn {
	var opts []nats.Option
	if m.opts.RoleInboxes {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	return natstest.Connect(m.t, m.Nodes[i%len(m.Nodes)], name, opts...)
}

// RouterNode is the index in Nodes of the NATS node router j connects to.
func (m *Mesh) RouterNode(j int) int { return (j + 1) % len(m.Nodes) }

// quietLogger discards logs unless CALLMESH_TEST_LOG is set.
func quietLogger() *slog.Logger {
	if os.Getenv("CALLMESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// AddRouter starts one more router.
func (m *Mesh) AddRouter() *router.Router {
	m.t.Helper()
	return m.AddRouterOn(m.connectRole(m.RouterNode(len(m.Routers)), "router", RouterInbox))
}

// AddRouterOn starts one more router, using nc (closed with the test).
func (m *Mesh) AddRouterOn(nc *nats.Conn) *router.Router {
	m.t.Helper()
	cfg := router.DefaultConfig()
	cfg.RingTimeout = m.opts.RingTimeout
	cfg.ResumeGrace = m.opts.ResumeGrace
	cfg.PresenceTTL = time.Second // the gateways' HeartbeatTTL
	cfg.Resync = 2 * time.Second
	cfg.Logger = quietLogger()
	cfg.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"router": strconv.Itoa(len(m.Routers))}, m.metrics)
	cfg.Replicas = min(len(m.Nodes), 3)
	if m.opts.Router != nil {
		m.opts.Router(&cfg)
	}
	r, err := router.New(cfg, nc)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
	})
	m.Routers = append(m.Routers, r)
	return r
}

// GatewayConfig returns the config AddGateway uses.
func (m *Mesh) GatewayConfig() gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Auth = gateway.AuthConfig{Alg: "HS256", Secret: Secret}
	cfg.RingTimeout = m.opts.RingTimeout
	cfg.ResumeGrace = m.opts.ResumeGrace
	cfg.Heartbeat = 200 * time.Millisecond
	cfg.HeartbeatTTL = time.Second
	cfg.DrainTimeout = 200 * time.Millisecond // tests' clients do not move on goaway
	cfg.Logger = quietLogger()
	cfg.Metrics = prometheus.NewRegistry()
	// Every test client has the same source address (loopback), and tests
	// connect the same users again and again, faster than people do: the
	// tests of the connect limits set them again.
	cfg.AddrConnectRate, cfg.UserConnectRate = 0, 0
	if m.opts.Gateway != nil {
		m.opts.Gateway(&cfg)
	}
	return cfg
}

// AddGateway starts one more gateway on a loopback listener.
func (m *Mesh) AddGateway() *Gateway {
	m.t.Helper()
	node := len(m.Gateways) % len(m.Nodes)
	return m.AddGatewayOn(node, m.connectRole(node, "gateway", GatewayInbox))
}

// AddGatewayOn starts one more gateway on a loopback listener, using nc (a
// connection to node, closed with the test).
func (m *Mesh) AddGatewayOn(node int, nc *nats.Conn) *Gateway {
	m.t.Helper()
	cfg := m.GatewayConfig()
	gw, err := gateway.New(context.Background(), cfg, nc)
	if err != nil {
		m.t.Fatal(err)
	}
	hs := httptest.NewServer(gw.Handler())
	g := &Gateway{Server: gw, HTTP: hs, NC: nc, Node: node, URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	g.metrics, _ = cfg.Metrics.(prometheus.Gatherer)
	var once sync.Once
	m.t.Cleanup(func() { once.Do(func() { g.shutdown() }) })
	m.Gateways = append(m.Gateways, g)
	return g
}

func (g *Gateway) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = g.Server.Shutdown(ctx)
	g.HTTP.Close()
}

// Connections is the gateway's gauge of open client connections (a socket
// counts until the gateway has noticed it is gone), or -1 if unknown.
func (g *Gateway) Connections() int {
	return int(g.Gauge("callmesh_gateway_connections"))
}

// Gauge is the value of the gateway's gauge name (without labels), or -1
// if unknown.
func (g *Gateway) Gauge(name string) float64 {
	if g.metrics == nil {
		return -1
	}
	families, _ := g.metrics.Gather()
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// Crash kills the gateway as a crash would: its NATS connection and its
// client sockets drop at once, and it neither retires nor tells anyone.
func (g *Gateway) Crash() {
	g.NC.Close()
	g.HTTP.CloseClientConnections()
	g.HTTP.Close()
}

// Token mints a valid token for user.
func (m *Mesh) Token(user string) string {
	m.t.Helper()
	tok, err := gateway.Mint(gateway.MintConfig{Alg: "HS256", Secret: Secret}, user, time.Hour)
	if err != nil {
		m.t.Fatal(err)
	}
	return tok
}

// Barrier proves that nothing else is on its way to client c: it publishes a
// marker on c's user subject after everything the test has observed so far,
// and waits until c receives it. Any frame that arrives first fails the test.
// Sound on one NATS server, which keeps the order in which publishes reach
// it; not on a cluster, where publishes made on different nodes may overtake
// each other.
func (m *Mesh) Barrier(c *Client) {
	m.t.Helper()
	id := "barrier-" + messages.NewID()
	d := messages.Delivery{Conn: c.Conn, Env: messages.Envelope{Type: messages.TypePong, ID: id}}
	if err := m.nc.Publish(m.names.UserSubject(c.User), messages.EncodeDelivery(&d)); err != nil {
		m.t.Fatal(err)
	}
	env := c.Next()
	if env.Type != messages.TypePong || env.ID != id {
		m.t.Fatalf("%s: expected nothing more, got %s", c, describe(env))
	}
}

func describe(e *messages.Envelope) string {
	b, _ := json.Marshal(e)
	return fmt.Sprintf("%s", b)
}
