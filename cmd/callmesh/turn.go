package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/turnserver"
)

// turnConfig is the TURN server config of c.
func (c *Config) turnConfig(log *slog.Logger, metrics prometheus.Registerer) turnserver.Config {
	t := c.TURN
	return turnserver.Config{
		Realm: t.Realm, Secret: t.Secret, UDPAddr: t.UDPAddr, TCPAddr: t.TCPAddr,
		TLSAddr: t.TLSAddr, TLSCert: t.TLSCert, TLSKey: t.TLSKey, RelayIP: t.RelayIP, RelayBind: t.RelayBind,
		PortMin: t.PortMin, PortMax: t.PortMax, UserQuota: t.UserQuota, AllowPeerCIDRs: t.AllowPeerCIDRs,
		Logger: log, Metrics: metrics,
	}
}

// runTURN runs the TURN server until ctx is done, serving /healthz and
// /metrics on turn.http_addr unless it is empty.
func runTURN(ctx context.Context, cfg *Config, log *slog.Logger) error {
	reg := newRegistry()
	tc := cfg.turnConfig(log, reg)
	if err := tc.Validate(); err != nil {
		return cfg.explain(err, turnFields)
	}
	srv, err := turnserver.Start(tc)
	if err != nil {
		return cfg.nameKeys(err, turnFields) // a listen address in use, say
	}
	serveErr := make(chan error, 1)
	var hs *http.Server
	if cfg.TURN.HTTPAddr != "" {
		ln, err := cfg.listen("turn.http_addr")
		if err != nil {
			return errors.Join(err, srv.Close())
		}
		hs = newHTTPServer(withPprof(srv.Handler(), cfg.Debug.Pprof), cfg.HTTP.HandshakeTimeout, log)
		go func() { serveErr <- hs.Serve(ln) }()
		log.Info("turn http listening", "addr", ln.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	err = errors.Join(err, srv.Close())
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err = errors.Join(err, hs.Shutdown(sctx))
	}
	if err == nil {
		log.Info("turn stopped")
	}
	return err
}
