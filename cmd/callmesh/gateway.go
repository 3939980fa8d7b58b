package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/callmesh/callmesh/gateway"
)

// shutdownTimeout bounds a graceful stop after the gateway's drain: closing
// the clients left with 1012, retiring from presence, stopping the router.
const shutdownTimeout = 15 * time.Second

// runGateway serves one gateway on http.addr until ctx is done, then drains
// it (goaway: clients resume on another gateway) and stops. The listener
// answers from the start: 503 "starting" on every path while the gateway
// waits for NATS, the presence bucket and its heartbeat (as long as that
// takes, until ctx is done), then the gateway's handler.
func runGateway(ctx context.Context, cfg *Config, log *slog.Logger) error {
	// keyfunc (JWKS) and presence.Bind log through the default logger.
	slog.SetDefault(log)
	if err := checkGateway(cfg); err != nil {
		return err
	}
	ln, err := cfg.listen("http.addr")
	if err != nil {
		return err
	}
	front := &startingHandler{}
	hs := newHTTPServer(withPprof(front, cfg.Debug.Pprof), cfg.HTTP.HandshakeTimeout, log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String())

	gcfg := cfg.gatewayConfig(log, newRegistry())
	id, inbox, err := gatewayIdentity(gcfg)
	if err != nil {
		return errors.Join(err, hs.Shutdown(context.Background()))
	}
	gcfg.ID = id
	nc, err := cfg.connectNATS("gateway", log, inbox)
	if err != nil {
		return errors.Join(err, hs.Shutdown(context.Background()))
	}
	defer closeNATS(nc)
	startCtx, started := whileStarting(ctx, nc)
	// startCtx outlives the start (the JWKS refresh runs on it) but, once
	// started, ends only with ctx.
	gw, err := gateway.New(startCtx, gcfg, nc)
	started()
	if err != nil {
		err = errors.Join(gatewayNewError(cfg, err), hs.Shutdown(context.Background()))
		if ctx.Err() != nil { // stopped while starting: not a failure
			log.Info("gateway stopped before it had started", "err", err)
			return nil
		}
		return err
	}
	front.ready(gw.Handler())
	log.Info("gateway ready", "addr", ln.Addr().String(), "gateway", gw.ID())

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.DrainTimeout+shutdownTimeout)
	defer cancel()
	return errors.Join(err, gw.Shutdown(sctx), hs.Shutdown(sctx))
}

// newHTTPServer serves a gateway's or router's handler. A client must send its whole
// request line and headers within handshake (http.handshake_timeout),
// counted from the moment its connection is accepted or, on a kept-alive
// connection, from its next request's first byte; otherwise the server
// closes the connection. The WebSocket handshake is a GET without a body,
// so that bounds it entirely. WebSockets are hijacked, which clears the
// deadlines: the timeouts bind only plain requests and the upgrade.
func newHTTPServer(h http.Handler, handshake time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: handshake,
		// ReadTimeout also covers the headers: never shorter than the
		// handshake timeout.
		ReadTimeout: max(handshake, 30*time.Second),
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// newRegistry is a gateway's or router's metrics registry, served at its
// /metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
