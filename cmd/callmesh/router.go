package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/callmesh/callmesh/router"
)

// runRouter runs one router until ctx is done, serving /healthz and
// /metrics on router.http_addr unless it is empty. Requests it still holds
// are finished; queued ones are retried by the gateways on another router.
func runRouter(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if err := checkRouter(cfg); err != nil {
		return err
	}
	var ln net.Listener
	if cfg.Router.HTTPAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.Router.HTTPAddr); err != nil {
			return err
		}
		defer ln.Close() // in case Serve never runs; Shutdown closes it otherwise
	}
	nc, err := connectNATS(cfg.NATS, "router", log)
	if err != nil {
		return err
	}
	defer closeNATS(nc)
	r, err := router.New(cfg.routerConfig(log, newRegistry()), nc)
	if err != nil {
		return configError{err}
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	var hs *http.Server
	serveErr := make(chan error, 1)
	if ln != nil {
		hs = newHTTPServer(r.Handler(), log)
		go func() { serveErr <- hs.Serve(ln) }()
		log.Info("router http listening", "addr", ln.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// The router first: /healthz answers 503 while it finishes its requests.
	err = errors.Join(err, r.Shutdown(sctx))
	if hs != nil {
		err = errors.Join(err, hs.Shutdown(sctx))
	}
	if err != nil {
		return err
	}
	log.Info("router stopped")
	return nil
}
