//go:build faults

package faults

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// Timings of the mesh under test: short enough for a test, in the
// proportions of the defaults (heartbeat < TTL; TTL + grace bounds the
// detection of a crashed gateway).
const (
	ringTimeout = 3 * time.Second
	resumeGrace = 3 * time.Second
	heartbeat   = 500 * time.Millisecond
	presenceTTL = 2 * time.Second
	resync      = 5 * time.Second
	// slack is added to every bound on top of what the configuration
	// promises: process scheduling on a loaded 2-core machine.
	slack = 3 * time.Second
)

// secret is the HS256 secret of the mesh's tokens.
const secret = "faults-secret-faults-secret-0123456789abcdef"

// bins holds the binaries built once by TestMain.
var bins struct{ callmesh, nats string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "callmesh-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.callmesh = filepath.Join(dir, "callmesh")
	bins.nats = filepath.Join(dir, "nats-server")
	for _, b := range [][]string{
		{"build", "-o", bins.callmesh, "github.com/callmesh/callmesh/cmd/callmesh"},
		{"build", "-o", bins.nats, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", b...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go %v: %v\n", b, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mesh is the system under test: the NATS cluster, the routers and the
// gateways, each a separate process.
type mesh struct {
	t        testing.TB
	dir      string
	nats     *cluster
	routers  []*service
	gateways []*service

	mu      sync.Mutex
	clients []*client // every client made, for the double-booking count
}

// service is a router or gateway process and the address of its HTTP
// listener (/healthz, and /ws for a gateway).
type service struct {
	*proc
	addr string // host:port
}

// wsURL is a gateway's WebSocket endpoint.
func (g *service) wsURL() string { return "ws://" + g.addr + "/ws" }

// health is the status code of the service's /healthz, or 0 if it does
// not answer.
func (g *service) health() int {
	code, _ := g.healthz()
	return code
}

// healthz is the status code and body of the service's /healthz, or 0 and
// the error if it does not answer.
func (g *service) healthz() (int, string) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + g.addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitHealthy waits until the service answers /healthz with 200. A
// service answers 503 "starting" while it waits for JetStream.
func (s *service) waitHealthy() {
	s.t.Helper()
	waitFor(s.t, 30*time.Second, func() error {
		if code, body := s.healthz(); code != http.StatusOK {
			if s.wait(0) {
				return fmt.Errorf("%s exited: %v\n%s", s.name, s.exitErr(), tail(s.log))
			}
			return fmt.Errorf("%s: /healthz %d %q\n%s", s.name, code, body, tail(s.log))
		}
		return nil
	})
}

// startMesh starts a 3-node NATS cluster, 2 routers and n gateways, and
// waits until every gateway is healthy.
func startMesh(t testing.TB, gateways int) *mesh {
	t.Helper()
	m := &mesh{t: t, dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range m.all() {
				t.Logf("--- %s log tail:\n%s", p.name, tail(p.log))
			}
		}
	})
	m.nats = startCluster(t, bins.nats, m.dir, 3)
	// One router after the other: two routers creating the buckets of a
	// fresh R3 cluster at the same moment both time out (seen with
	// nats-server 2.15) and retry, which costs seconds. Gateways bind to
	// the presence bucket a router creates (they would wait for it).
	for i := range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, m.dir, fmt.Sprintf("router%d", i), bins.callmesh, m.env(), append(m.args("router"), "--router.http_addr", addr)...)
		r := &service{proc: p, addr: addr}
		r.waitHealthy()
		m.routers = append(m.routers, r)
	}
	m.nats.waitStreams(30*time.Second, "KV_"+messages.DefaultPrefix+"_calls", "KV_"+messages.DefaultPrefix+"_presence")
	for i := range gateways {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, m.dir, fmt.Sprintf("gateway%d", i), bins.callmesh, m.env(), append(m.args("gateway"), "--http.addr", addr)...)
		m.gateways = append(m.gateways, &service{proc: p, addr: addr})
	}
	for _, g := range m.gateways {
		g.waitHealthy()
	}
	return m
}

// all is every process of the mesh.
func (m *mesh) all() []*proc {
	var ps []*proc
	if m.nats == nil {
		return nil
	}
	for _, n := range m.nats.nodes {
		ps = append(ps, n.proc)
	}
	for _, r := range m.routers {
		ps = append(ps, r.proc)
	}
	for _, g := range m.gateways {
		ps = append(ps, g.proc)
	}
	return ps
}

// env is the environment of routers and gateways: the secret stays out of
// the command line.
func (m *mesh) env() []string {
	return []string{"CALLMESH_JWT_SECRET=" + secret}
}

// args is the command line of a router or gateway.
func (m *mesh) args(cmd string) []string {
	return []string{cmd,
		"--nats.url", m.nats.URLs(),
		"--nats.replicas", "3",
		"--call.ring_timeout", ringTimeout.String(),
		"--call.resume_grace", resumeGrace.String(),
		"--presence.heartbeat", heartbeat.String(),
		"--presence.ttl", presenceTTL.String(),
		"--presence.resync", resync.String(),
		// The harness makes many calls between the same users.
		"--limits.invite_rate", "20",
		"--limits.invite_burst", "40",
		"--ice.servers", `[{"urls":["stun:127.0.0.1:3478"]}]`,
		"--rooms.max_members", strconv.Itoa(roomMax),
	}
}

// token mints a token for user, valid for an hour.
func token(t testing.TB, user string) string {
	t.Helper()
	s, err := gateway.Mint(gateway.MintConfig{Alg: "HS256", Secret: secret}, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
