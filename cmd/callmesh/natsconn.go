package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/fielderr"
)

// connectNATS is connectNATS to nats.*, with errors that name the keys.
func (c *Config) connectNATS(role string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := connectNATS(c.NATS, role, log, extra...)
	var ce configError
	if errors.As(err, &ce) {
		return nil, c.explain(ce.err, natsFields)
	}
	return nc, err
}

// connectNATS opens the NATS connection of one component (role: gateway,
// router) to n.URL with n's credentials, and extra options. It returns at once, connected or
// not: the connection is made, and remade, forever and fast in the
// background. A gateway or router is useless without NATS, and presence
// gives a silent gateway only presence.ttl (3 s) before its clients' calls
// start ending.
func connectNATS(n natsConfig, role string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	log = log.With("component", "nats", "role", role)
	opts := []nats.Option{
		nats.Name("callmesh-" + role),
		// Never give up: an orchestrator restarting NATS must not leave
		// gateways and routers that have stopped trying.
		nats.MaxReconnects(-1),
		// Retry a lost server quickly, with jitter so a whole fleet does not
		// reconnect in lockstep.
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		// Dial timeout of each attempt.
		nats.Timeout(2 * time.Second),
		// Notice a dead TCP connection (no RST: host down, network split)
		// within 4–6 s instead of the default 4 minutes: a ping every 2 s,
		// stale after 2 unanswered. That is well inside presence TTL +
		// resume grace (3 s + 10 s by default), the time a gateway has to
		// come back on another node before routers end its clients' calls
		// as disconnected; at 5 s it took up to 15 s. A killed process or
		// a closed port is noticed at once (RST); pings cost one frame per
		// connection per interval.
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		// Publishes made while reconnecting are buffered (8 MiB, the
		// default, stated here on purpose) and sent once connected to
		// another node. Core NATS still loses what was in flight on the
		// dead link.
		nats.ReconnectBufSize(8 << 20),
		// Keep trying at startup as well: a component started alongside
		// its NATS servers (a fresh cluster, a rollout of the whole stack)
		// waits for them instead of exiting. Connect returns at once; the
		// buckets are opened with retries (kvutil.Retry) and /healthz
		// answers 503 "starting" until they are.
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by us
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Warn("nats connection closed", "err", err)
				return
			}
			log.Debug("nats connection closed")
		}),
		// The gateway installs its own handler (gateway.New); this one is
		// the router's.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats async error", "subject", subject, "err", err)
		}),
	}

	switch {
	case n.Creds != "":
		opts = append(opts, nats.UserCredentials(n.Creds))
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	case n.Token != "":
		opts = append(opts, nats.Token(n.Token))
	case n.NKeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(n.NKeySeed)
		if err != nil {
			return nil, configError{fielderr.New(err.Error(), "NKeySeed")} // Config.connectNATS names the key
		}
		opts = append(opts, opt)
	}
	if n.TLSCA != "" {
		opts = append(opts, nats.RootCAs(n.TLSCA))
	}
	if n.TLSCert != "" {
		opts = append(opts, nats.ClientCert(n.TLSCert, n.TLSKey))
	}

	nc, err := nats.Connect(n.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats (%s): %w", redactURLs(n.URL), err)
	}
	if !nc.IsConnected() {
		log.Warn("nats not reachable yet; retrying", "url", redactURLs(n.URL))
	}
	return nc, nil
}

// redactURLs hides the passwords in a comma-separated list of URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// closeNATS flushes what nc still holds and closes it.
func closeNATS(nc *nats.Conn) {
	_ = nc.FlushTimeout(time.Second)
	nc.Close()
}
