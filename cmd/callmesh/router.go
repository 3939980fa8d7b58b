package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/callmesh/callmesh/router"
)

// runRouter runs one router until ctx is done, serving /healthz and
// /metrics on router.http_addr unless it is empty. Its listener answers
// from the start: 503 "starting" while the router waits for NATS and its
// buckets (as long as that takes, until ctx is done), then the router's
// handler. Requests it still holds at the end are finished; queued ones
// are retried by the gateways on another router.
func runRouter(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if err := checkRouter(cfg); err != nil {
		return err
	}
	var hs *http.Server
	front := &startingHandler{}
	serveErr := make(chan error, 1)
	if cfg.Router.HTTPAddr != "" {
		ln, err := cfg.listen("router.http_addr")
		if err != nil {
			return err
		}
		hs = newHTTPServer(withPprof(front, cfg.Debug.Pprof), cfg.HTTP.HandshakeTimeout, log)
		go func() { serveErr <- hs.Serve(ln) }()
		log.Info("router http listening", "addr", ln.Addr().String())
	}
	stopHTTP := func(ctx context.Context) error {
		if hs == nil {
			return nil
		}
		return hs.Shutdown(ctx)
	}
	nc, err := cfg.connectNATS("router", log)
	if err != nil {
		return errors.Join(err, stopHTTP(context.Background()))
	}
	defer closeNATS(nc)
	r, err := router.New(cfg.routerConfig(log, newRegistry()), nc)
	if err != nil {
		return errors.Join(cfg.explain(err, routerFields), stopHTTP(context.Background()))
	}
	startCtx, started := whileStarting(ctx, nc)
	err = r.Start(startCtx)
	started()
	if err != nil {
		err = errors.Join(err, stopHTTP(context.Background()))
		if ctx.Err() != nil { // stopped while starting: not a failure
			log.Info("router stopped before it had started", "err", err)
			return nil
		}
		return err
	}
	front.ready(r.Handler())

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// The router first: /healthz answers 503 while it finishes its requests.
	err = errors.Join(err, r.Shutdown(sctx), stopHTTP(sctx))
	if err != nil {
		return err
	}
	log.Info("router stopped")
	return nil
}
