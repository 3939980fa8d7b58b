package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
// it (goaway: clients resume on another gateway) and stops.
func runGateway(ctx context.Context, cfg *Config, log *slog.Logger) error {
	// keyfunc (JWKS) logs through the default logger.
	slog.SetDefault(log)
	if err := checkGateway(ctx, cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return err
	}
	defer ln.Close() // in case Serve never runs; Shutdown closes it otherwise
	nc, err := connectNATS(cfg.NATS, "gateway", log)
	if err != nil {
		return err
	}
	defer closeNATS(nc)
	gw, err := gateway.New(ctx, cfg.gatewayConfig(log, newRegistry()), nc)
	if err != nil {
		return gatewayNewError(err)
	}

	hs := newHTTPServer(gw.Handler(), log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String(), "gateway", gw.ID())

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.DrainTimeout+shutdownTimeout)
	defer cancel()
	return errors.Join(err, gw.Shutdown(sctx), hs.Shutdown(sctx))
}

// newHTTPServer serves a gateway's or router's handler. WebSockets are hijacked, so
// the timeouts bind only plain requests and the upgrade.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// newRegistry is a gateway's or router's metrics registry, served at its
// /metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
