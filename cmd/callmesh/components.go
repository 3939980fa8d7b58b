package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/router"
)

// authConfig is the token verification of c.
func (c *Config) authConfig() gateway.AuthConfig {
	return gateway.AuthConfig{
		Alg: c.JWT.Alg, Secret: c.JWT.Secret, KeyFile: c.JWT.KeyFile, JWKSURL: c.JWT.JWKSURL,
		JWKSRefresh: c.JWT.JWKSRefresh, Issuer: c.JWT.Issuer, Audience: c.JWT.Audience,
		Leeway: c.JWT.Leeway, MaxTokenBytes: c.JWT.MaxTokenBytes,
	}
}

// mintConfig signs tokens that authConfig accepts: with jwt.secret for
// HS*, with jwt.signing_key_file otherwise.
func (c *Config) mintConfig() gateway.MintConfig {
	m := gateway.MintConfig{Alg: c.JWT.Alg, Issuer: c.JWT.Issuer, Audience: c.JWT.Audience}
	if isHMAC(c.JWT.Alg) {
		m.Secret = c.JWT.Secret
	} else {
		m.PrivateKeyFile = c.JWT.SigningKeyFile
	}
	return m
}

// signer is c's mintConfig once a token signed with it has shown that
// the jwt.* settings can sign; otherwise an error, for what (the switch
// that needs tokens), naming the keys.
func (c *Config) signer(what string) (gateway.MintConfig, error) {
	m := c.mintConfig()
	if _, err := gateway.Mint(m, "check", time.Minute); err != nil {
		return m, c.explain(fmt.Errorf("%s: %w", what, err), mintFields)
	}
	return m, nil
}

func isHMAC(alg string) bool { return strings.HasPrefix(alg, "HS") }

// gatewayConfig is the gateway config of c.
func (c *Config) gatewayConfig(log *slog.Logger, metrics prometheus.Registerer) gateway.Config {
	return gateway.Config{
		Prefix:             c.NATS.Prefix,
		Name:               c.gatewayName(),
		Auth:               c.authConfig(),
		ExpiryWarning:      c.JWT.ExpiryWarning,
		ICEServers:         c.ICE.Servers,
		ICETransportPolicy: c.ICE.TransportPolicy,
		RingTimeout:        c.Call.RingTimeout,
		ResumeGrace:        c.Call.ResumeGrace,
		Heartbeat:          c.Presence.Heartbeat,
		HeartbeatTTL:       c.Presence.TTL,
		DrainTimeout:       c.HTTP.DrainTimeout,
		MaxMessageBytes:    int64(c.Limits.MaxMessageBytes),
		MaxDataBytes:       c.Limits.MaxDataBytes,
		SendQueue:          c.Limits.SendQueue,
		MessageRate:        c.Limits.MessageRate,
		MessageBurst:       c.Limits.MessageBurst,
		InviteRate:         c.Limits.InviteRate,
		InviteBurst:        c.Limits.InviteBurst,
		MaxConnsPerUser:    c.Limits.MaxConnsPerUser,
		MaxConns:           c.Limits.MaxConns,
		WriteTimeout:       c.Limits.WriteTimeout,
		PingInterval:       c.Limits.PingInterval,
		RouterTimeout:      c.Router.Timeout,
		RouterAttempt:      c.Router.Attempt,
		OriginPatterns:     c.HTTP.OriginPatterns,
		Demo:               c.HTTP.Demo,
		DevTokenTTL:        c.Dev.TokenTTL,
		Logger:             log,
		Metrics:            metrics,

		ByteRate:         c.Limits.ByteRate,
		ByteBurst:        c.Limits.ByteBurst,
		AddrConnectRate:  c.Limits.AddrConnectRate,
		AddrConnectBurst: c.Limits.AddrConnectBurst,
		UserConnectRate:  c.Limits.UserConnectRate,
		UserConnectBurst: c.Limits.UserConnectBurst,
	}
}

// gatewayName is gateway.name, defaulted to the NATS user: with the shipped
// deploy/nats-auth.conf, each gateway's NATS user is its name.
func (c *Config) gatewayName() string {
	switch {
	case c.Gateway.Name != "":
		return c.Gateway.Name
	case c.NATS.User != "":
		return c.NATS.User
	}
	return "gateway"
}

// gatewayIdentity makes a fresh id for a gateway of cfg and the NATS option
// that gives its connection the inbox only that gateway may read.
func gatewayIdentity(cfg gateway.Config) (id string, inbox nats.Option, err error) {
	names, err := messages.NewNames(cfg.Prefix)
	if err != nil {
		return "", nil, configError{err}
	}
	if err := messages.ValidGatewayName(cfg.Name); err != nil {
		return "", nil, configErrorf("gateway.name: %w", err)
	}
	id = messages.NewGatewayID(cfg.Name)
	return id, nats.CustomInboxPrefix(names.GatewayInbox(id)), nil
}

// routerConfig is the router config of c.
func (c *Config) routerConfig(log *slog.Logger, metrics prometheus.Registerer) router.Config {
	return router.Config{
		Prefix:         c.NATS.Prefix,
		RingTimeout:    c.Call.RingTimeout,
		ResumeGrace:    c.Call.ResumeGrace,
		PresenceTTL:    c.Presence.TTL,
		EndedRetention: c.Call.EndedRetention,
		Resync:         c.Presence.Resync,
		Workers:        c.Router.Workers,
		Replicas:       c.NATS.Replicas,
		Events:         events.StreamConfig{Retention: c.Events.Retention, MaxBytes: int64(c.Events.MaxBytes)},
		Rooms:          router.RoomsConfig{MaxMembers: c.Rooms.MaxMembers, EmptyTimeout: c.Rooms.EmptyTimeout, Exclusive: c.Rooms.Exclusive},
		Logger:         log,
		Metrics:        metrics,
	}
}

// checkGateway validates the gateway config and the token config (reading
// jwt.key_file; the JWK Set is fetched by gateway.New) before anything
// starts.
func checkGateway(c *Config) error {
	gw := c.gatewayConfig(nil, nil)
	if err := gw.Validate(); err != nil {
		return c.explain(err, gatewayFields)
	}
	return c.explain(c.authConfig().Validate(), authFields)
}

// checkRouter validates the router config before anything starts.
func checkRouter(c *Config) error {
	rc := c.routerConfig(nil, nil)
	return c.explain(rc.Validate(), routerFields)
}

// gatewayNewError classifies an error of gateway.New: a JWKS config that
// checkGateway could not check is a configError.
func gatewayNewError(c *Config, err error) error {
	if errors.Is(err, gateway.ErrAuthConfig) {
		return c.explain(err, authFields)
	}
	return err
}

// newLogger makes the process logger from log.level and log.format (both
// validated by loadConfig).
func newLogger(c *Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.Log.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
