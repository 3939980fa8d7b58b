package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/callmesh/callmesh/internal/embednats"
	"github.com/callmesh/callmesh/internal/natstest"
)

// get is the status and body of GET url; 0 if nothing answers.
func get(url string) (int, string) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// component is `callmesh router` or `callmesh gateway` running in-process.
type component struct {
	name   string
	cancel context.CancelFunc
	exit   chan int
	stderr syncBuffer
	base   string // http://host:port of its listener
}

// run starts `callmesh args...` until the test ends and, if listening
// matches its log, waits for the address it listens on.
func run(t *testing.T, listening *regexp.Regexp, args ...string) *component {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &component{name: args[0], cancel: cancel, exit: make(chan int, 1)}
	t.Cleanup(func() {
		cancel()
		<-c.exit
	})
	go func() { c.exit <- Run(ctx, args, nil, io.Discard, &c.stderr) }()
	if listening == nil {
		return c
	}
	natstest.WaitFor(t, c.name+" listens", func() error {
		c.alive(t)
		m := listening.FindStringSubmatch(c.stderr.String())
		if m == nil {
			return fmt.Errorf("not listening:\n%s", c.stderr.String())
		}
		c.base = "http://" + m[1]
		return nil
	})
	return c
}

// alive fails the test if the component has exited.
func (c *component) alive(t *testing.T) {
	t.Helper()
	select {
	case code := <-c.exit:
		c.exit <- code // for Cleanup
		t.Fatalf("%s exited with %d:\n%s", c.name, code, c.stderr.String())
	default:
	}
}

// waitHealth waits until the component's /healthz answers code with body.
func (c *component) waitHealth(t *testing.T, code int, body string) {
	t.Helper()
	natstest.WaitFor(t, fmt.Sprintf("%s /healthz %d", c.name, code), func() error {
		c.alive(t)
		if got, b := get(c.base + "/healthz"); got != code || b != body {
			return fmt.Errorf("/healthz %d %q, want %d %q; log:\n%s", got, b, code, body, c.stderr.String())
		}
		return nil
	})
}

// waitLog waits until the component has logged a line matching re.
func (c *component) waitLog(t *testing.T, re string) {
	t.Helper()
	natstest.WaitFor(t, c.name+" logs "+re, func() error {
		c.alive(t)
		if !regexp.MustCompile(re).MatchString(c.stderr.String()) {
			return fmt.Errorf("no line matching %s:\n%s", re, c.stderr.String())
		}
		return nil
	})
}

// stop cancels the component and checks it exits with 0.
func (c *component) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case code := <-c.exit:
		c.exit <- code
		if code != 0 {
			t.Errorf("%s: exit code %d after cancel:\n%s", c.name, code, c.stderr.String())
		}
	case <-time.After(natstest.Wait):
		t.Fatalf("%s did not stop:\n%s", c.name, c.stderr.String())
	}
}

// natsLater is a loopback address where a NATS server will be started by
// start, and nothing listens until then.
type natsLater struct{ port int }

func newNATSLater(t *testing.T) *natsLater {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return &natsLater{port: ln.Addr().(*net.TCPAddr).Port}
}

func (n *natsLater) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsLater) start(t *testing.T) {
	t.Helper()
	srv, err := embednats.Start(embednats.Options{Port: n.port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
}

var (
	routerListening  = regexp.MustCompile(`msg="router http listening" addr=(\S+)`)
	gatewayListening = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)
)

// A router started before its NATS server is up does not exit: its
// /healthz answers 503 "starting" while it waits, and 200 once the server
// has come and the router has opened its buckets.
func TestRouterWaitsForNATS(t *testing.T) {
	nats := newNATSLater(t)
	r := run(t, routerListening, "router", "--nats.url", nats.URL(), "--router.http_addr", "127.0.0.1:0")
	r.waitHealth(t, http.StatusServiceUnavailable, "starting\n")
	r.waitLog(t, `level=WARN msg="nats not reachable yet; retrying"`)
	r.waitHealth(t, http.StatusServiceUnavailable, "starting\n") // still waiting, still answering

	nats.start(t)
	r.waitHealth(t, http.StatusOK, "ok\n")
	if code, body := get(r.base + "/metrics"); code != http.StatusOK || !strings.Contains(body, "callmesh_router_cas_retries_total") {
		t.Errorf("/metrics once started: %d\n%s", code, body)
	}
	r.stop(t)
}

// A gateway started before NATS and before any router waits for both: 503
// "starting" on /healthz and /ws, then 200 once a router has created the
// presence bucket.
func TestGatewayWaitsForNATSAndRouter(t *testing.T) {
	nats := newNATSLater(t)
	gw := run(t, gatewayListening, "gateway", "--nats.url", nats.URL(), "--http.addr", "127.0.0.1:0",
		"--jwt.secret", strings.Repeat("s", 32))
	gw.waitHealth(t, http.StatusServiceUnavailable, "starting\n")
	if code, _ := get(gw.base + "/ws"); code != http.StatusServiceUnavailable {
		t.Errorf("/ws while starting: %d, want 503", code)
	}

	nats.start(t)
	gw.waitLog(t, `level=WARN msg=retrying what="bind presence bucket" .*start a router`)
	gw.waitHealth(t, http.StatusServiceUnavailable, "starting\n")

	r := run(t, nil, "router", "--nats.url", nats.URL(), "--router.http_addr", "")
	gw.waitHealth(t, http.StatusOK, "ok\n")
	gw.stop(t)
	r.stop(t)
}

// Stopping a component that is still waiting is a clean stop (exit 0).
func TestStopWhileStarting(t *testing.T) {
	nats := newNATSLater(t)
	r := run(t, routerListening, "router", "--nats.url", nats.URL(), "--router.http_addr", "127.0.0.1:0")
	r.waitHealth(t, http.StatusServiceUnavailable, "starting\n")
	r.stop(t)
	if !strings.Contains(r.stderr.String(), "router stopped before it had started") {
		t.Errorf("no clean stop in the log:\n%s", r.stderr.String())
	}
	if code, _ := get(r.base + "/healthz"); code != 0 {
		t.Errorf("/healthz answers %d after the stop; want the listener closed", code)
	}
}

// A component whose credentials NATS refuses does not wait forever:
// nats.go closes the connection after the second refusal, and the
// component exits with 1, saying why.
func TestRefusedCredentialsExit(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Username: "router", Password: "right",
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(natstest.Wait) {
		t.Fatal("nats-server not ready")
	}
	for _, cmd := range [][]string{
		{"router", "--router.http_addr", "127.0.0.1:0"},
		{"gateway", "--http.addr", "127.0.0.1:0", "--jwt.secret", strings.Repeat("s", 32)},
	} {
		c := run(t, nil, append(cmd, "--nats.url", srv.ClientURL(), "--nats.user", "router", "--nats.password", "wrong")...)
		select {
		case code := <-c.exit:
			c.exit <- code
			if code != 1 || !strings.Contains(c.stderr.String(), "Authorization Violation") {
				t.Errorf("%s: exit code %d, want 1 naming the refusal:\n%s", cmd[0], code, c.stderr.String())
			}
		case <-time.After(natstest.Wait):
			t.Fatalf("%s still running with refused credentials:\n%s", cmd[0], c.stderr.String())
		}
	}
}
