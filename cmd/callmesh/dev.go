package main

// callmesh dev: the whole mesh in one process, for a laptop. An embedded
// NATS server with JetStream, one router and dev.gateways gateways, each
// with its own NATS connection as if it ran on its own machine. Anyone can
// get a token for any user at /dev/token: never expose it. Every call and
// room event is logged at info (devevents.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/embednats"
	"github.com/callmesh/callmesh/router"
	"github.com/callmesh/callmesh/turnserver"
)

// devMesh is what runDev has started, so that close can stop it in order.
type devMesh struct {
	log       *slog.Logger
	storeDir  string
	tempStore bool // storeDir is ours to remove
	natsNote  string
	nats      *server.Server
	routerNC  *nats.Conn
	router    *router.Router
	turn      *turnserver.Server // dev.turn
	turnNote  string
	events    *devEvents // call and room events, logged at info
	gateways  []*devGateway
	serveErr  chan error
}

type devGateway struct {
	ln      net.Listener
	metrics *prometheus.Registry
	nc      *nats.Conn
	srv     *gateway.Server
	http    *http.Server
}

// runDev runs the mesh until ctx is done, then stops it: gateways first
// (clients get goaway, then close 1012), then their HTTP servers, the router and NATS.
func runDev(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer) error {
	cfg.HTTP.Demo = true // dev always serves the demo page
	mint, generated, err := devAuth(cfg)
	if err != nil {
		return err
	}
	if err := checkGateway(cfg); err != nil {
		return err
	}
	if err := checkRouter(cfg); err != nil {
		return err
	}
	if cfg.Dev.TURN {
		t := devTURNConfig(cfg, nil, nil)
		if err := t.Validate(); err != nil {
			return cfg.explain(err, turnFields)
		}
	}

	m := &devMesh{log: log, serveErr: make(chan error, cfg.Dev.Gateways)}
	err = m.start(ctx, cfg, mint)
	if err == nil {
		m.printBanner(out, cfg, mint, generated)
		select {
		case <-ctx.Done():
		case err = <-m.serveErr:
			err = fmt.Errorf("serve: %w", err)
		}
	} else if ctx.Err() != nil {
		err = nil // interrupted while starting
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return errors.Join(err, m.close(sctx))
}

// devAuth applies dev's token settings to cfg: an HS* secret made for the
// session when none is set, any browser origin when none is set. It
// returns what /dev/token mints with (nil when the configured alg is
// asymmetric and jwt.signing_key_file is not set) and whether the secret
// was generated.
func devAuth(cfg *Config) (mint *gateway.MintConfig, generated bool, err error) {
	if len(cfg.HTTP.OriginPatterns) == 0 {
		cfg.HTTP.OriginPatterns = []string{"*"}
	}
	j := &cfg.JWT
	if isHMAC(j.Alg) && j.Secret == "" && j.KeyFile == "" && j.JWKSURL == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b) // never fails
		j.Secret, generated = hex.EncodeToString(b), true
	}
	if !isHMAC(j.Alg) && j.SigningKeyFile == "" {
		return nil, false, nil
	}
	mc, err := cfg.signer("dev tokens")
	if err != nil {
		return nil, false, err
	}
	return &mc, generated, nil
}

// start starts everything, in the order it depends on itself. What has
// started is in m for close, also on error.
func (m *devMesh) start(ctx context.Context, cfg *Config, mint *gateway.MintConfig) error {
	// Listeners first: a port in use fails before anything runs.
	host, port, _ := splitAddr(cfg.HTTP.Addr)
	for i := range cfg.Dev.Gateways {
		p := 0 // port 0: every gateway on a free port
		if port != 0 {
			p = port + i
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			return fmt.Errorf("gateway %d: %s: %w", i, cfg.describe("http.addr"), err)
		}
		m.gateways = append(m.gateways, &devGateway{ln: ln, metrics: newRegistry()})
	}

	m.storeDir = cfg.Dev.StoreDir
	if m.storeDir == "" {
		dir, err := os.MkdirTemp("", "callmesh-dev-")
		if err != nil {
			return err
		}
		m.storeDir, m.tempStore = dir, true
	}
	natsPort := cfg.Dev.NATSPort
	if natsPort == 0 {
		natsPort = -1
	} else if !portFree(natsPort) {
		m.natsNote = fmt.Sprintf("port %d is busy, took a free one", natsPort)
		natsPort = -1
	}
	var err error
	if m.nats, err = embednats.Start(embednats.Options{Host: "127.0.0.1", Port: natsPort, StoreDir: m.storeDir}); err != nil {
		return err
	}
	embedded := natsConfig{URL: m.nats.ClientURL()} // no credentials: the embedded server has no auth
	// The router and the gateways reach the embedded server in process,
	// without a socket: each NATS hop of a signal saves a write, a read
	// and the kernel's loopback (about a quarter of the CPU of a relayed
	// signal in dev; README "Measured"). Clients outside the process, and
	// every component of a real deployment, use the URL.
	inProcess := nats.InProcessServer(m.nats)

	// The router's metrics are served with gateway 0's: one process.
	if m.routerNC, err = connectNATS(embedded, "router", m.log, inProcess); err != nil {
		return err
	}
	r, err := router.New(cfg.routerConfig(m.log, m.gateways[0].metrics), m.routerNC)
	if err != nil {
		return cfg.explain(err, routerFields)
	}
	if err := r.Start(ctx); err != nil {
		return err // not kept: Shutdown of a router whose Start failed panics
	}
	m.router = r
	if err := m.startEvents(ctx, cfg, m.nats.ClientURL(), inProcess); err != nil {
		return err
	}

	if cfg.Dev.TURN { // before the gateways: it joins ice.servers
		if err := m.startTURN(cfg, m.gateways[0].metrics); err != nil {
			return err
		}
	}
	for i, g := range m.gateways {
		gcfg := cfg.gatewayConfig(m.log, g.metrics)
		id, inbox, err := gatewayIdentity(gcfg)
		if err != nil {
			return err
		}
		gcfg.ID = id
		if g.nc, err = connectNATS(embedded, "gateway-"+strconv.Itoa(i), m.log, inbox, inProcess); err != nil {
			return err
		}
		gcfg.DevTokens = mint
		gcfg.DrainTimeout = 0 // every gateway stops at once: nowhere to resume
		if g.srv, err = gateway.New(ctx, gcfg, g.nc); err != nil {
			return fmt.Errorf("gateway %d: %w", i, gatewayNewError(cfg, err))
		}
		g.http = newHTTPServer(withPprof(g.srv.Handler(), cfg.Debug.Pprof), cfg.HTTP.HandshakeTimeout, m.log)
		go func() {
			if err := g.http.Serve(g.ln); !errors.Is(err, http.ErrServerClosed) {
				m.serveErr <- fmt.Errorf("gateway %d: %w", i, err)
			}
		}()
	}
	return nil
}

// portFree reports whether 127.0.0.1:port can be listened on. (The embedded
// server does not report a failed listen; it would only time out.)
func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// close stops whatever start started, in order: gateways (clients get
// goaway and 1012), HTTP servers, NATS connections, the router,
// NATS, and the temporary store.
func (m *devMesh) close(ctx context.Context) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i, g := range m.gateways {
		if g.srv != nil {
			wg.Go(func() {
				if err := g.srv.Shutdown(ctx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("gateway %d: %w", i, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, g := range m.gateways {
		if g.http != nil {
			errs = append(errs, g.http.Shutdown(ctx))
		} else {
			g.ln.Close()
		}
		if g.nc != nil {
			closeNATS(g.nc)
		}
	}
	if m.events != nil {
		m.events.close()
	}
	if m.router != nil {
		errs = append(errs, m.router.Shutdown(ctx))
	}
	if m.turn != nil {
		errs = append(errs, m.turn.Close())
	}
	if m.routerNC != nil {
		closeNATS(m.routerNC)
	}
	if m.nats != nil {
		m.nats.Shutdown()
		m.nats.WaitForShutdown()
	}
	if m.tempStore {
		errs = append(errs, os.RemoveAll(m.storeDir))
	}
	m.log.Info("dev mesh stopped")
	return errors.Join(errs...)
}

// printBanner tells the developer where everything is.
func (m *devMesh) printBanner(w io.Writer, cfg *Config, mint *gateway.MintConfig, generated bool) {
	fmt.Fprintln(w, "callmesh dev: the whole mesh in one process, for development only")
	store := m.storeDir
	if m.tempStore {
		store += ", removed on exit"
	}
	note := ""
	if m.natsNote != "" {
		note = "; " + m.natsNote
	}
	fmt.Fprintf(w, "  NATS        %s  (embedded, JetStream in %s%s)\n", m.nats.ClientURL(), store, note)
	fmt.Fprintf(w, "  router      1, prefix %q\n", cfg.NATS.Prefix)
	m.printTURN(w, cfg)
	for i, g := range m.gateways {
		addr := displayAddr(g.ln.Addr())
		fmt.Fprintf(w, "  gateway %-3d ws://%s/ws  http://%s  (demo page; /healthz, /metrics)\n", i, addr, addr)
	}
	first := "http://" + displayAddr(m.gateways[0].ln.Addr())
	if mint == nil {
		fmt.Fprintf(w, "  dev tokens  off: %s needs jwt.signing_key_file to mint them\n", cfg.JWT.Alg)
	} else {
		fmt.Fprintf(w, "  dev tokens  %s/dev/token?user=NAME  (%s, valid %s; any user, no password)\n", first, cfg.JWT.Alg, shortDuration(cfg.Dev.TokenTTL))
	}
	if generated {
		fmt.Fprintf(w, "  jwt.secret  %s  (made for this session; set jwt.secret to keep tokens valid across restarts)\n", cfg.JWT.Secret)
	}
	fmt.Fprintf(w, "  origins     %v\n", cfg.HTTP.OriginPatterns)
	if mint != nil {
		fmt.Fprintf(w, "  try         curl '%s/dev/token?user=alice'\n", first)
		fmt.Fprintf(w, "              then connect to ws://%s/ws?access_token=TOKEN\n", first[len("http://"):])
	}
	fmt.Fprintln(w, "ready; Ctrl-C to stop")
}

// shortDuration writes d without zero minutes and seconds: 1h, not 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// displayAddr is addr as a browser would reach it: an unspecified host
// (0.0.0.0, ::) becomes localhost.
func displayAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
