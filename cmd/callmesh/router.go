package main

import (
	"context"
	"log/slog"

	"github.com/callmesh/callmesh/router"
)

// runRouter runs one router until ctx is done. Requests it still holds are
// finished; queued ones are retried by the gateways on another router.
func runRouter(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if err := checkRouter(cfg); err != nil {
		return err
	}
	nc, err := connectNATS(cfg.NATS, "router", log)
	if err != nil {
		return err
	}
	defer closeNATS(nc)
	r, err := router.New(cfg.routerConfig(log, nil), nc)
	if err != nil {
		return configError{err}
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		return err
	}
	log.Info("router stopped")
	return nil
}
