package turnserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/internal/fielderr"
)

// Config configures a TURN server. DefaultConfig documents the defaults.
type Config struct {
	// Realm is the TURN realm (turn.realm).
	Realm string
	// Secret is the shared secret of the TURN REST credentials, the same as
	// the secret of the ice.servers entry that names this server.
	Secret string
	// UDPAddr and TCPAddr are where clients reach the server ("" for none).
	UDPAddr, TCPAddr string
	// TLSAddr, with TLSCert and TLSKey (PEM files), serves TURN over TLS.
	TLSAddr, TLSCert, TLSKey string
	// RelayIP is the address peers send to, written into every relayed
	// candidate: the server's public (or private network) address.
	RelayIP string
	// RelayBind is the local address relay sockets bind to ("" for RelayIP).
	RelayBind string
	// PortMin and PortMax bound the relay ports.
	PortMin, PortMax int
	// UserQuota bounds one user's live allocations (0: no bound).
	UserQuota int
	// AllowPeerCIDRs are the peer networks a client may relay to although
	// they are loopback, private, link-local, multicast or unspecified.
	AllowPeerCIDRs []string
	// Logger receives the server's logs (slog.Default() when nil).
	Logger *slog.Logger
	// Metrics registers the server's metrics (none when nil).
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults: realm callmesh, UDP and TCP on port
// 3478, relay ports 49152–65535, 10 allocations per user, no private peers.
func DefaultConfig() Config {
	return Config{
		Realm: "callmesh", UDPAddr: "0.0.0.0:3478", TCPAddr: "0.0.0.0:3478",
		PortMin: 49152, PortMax: 65535, UserQuota: 10,
	}
}

// Validate reports every problem with c; Start calls it. Each problem is a
// *fielderr.Error naming the fields it is about.
func (c *Config) Validate() error {
	var errs []error
	bad := func(reason string, fields ...string) { errs = append(errs, fielderr.New(reason, fields...)) }
	if c.Realm == "" {
		bad("must be set", "Realm")
	}
	if len(c.Secret) < 16 {
		bad("must be at least 16 bytes (the secret of the ICE server entry naming this server)", "Secret")
	}
	if c.UDPAddr == "" && c.TCPAddr == "" && c.TLSAddr == "" {
		bad("set at least one listen address", "UDPAddr", "TCPAddr", "TLSAddr")
	}
	if (c.TLSAddr != "") != (c.TLSCert != "" && c.TLSKey != "") {
		bad("a TLS listen address needs a certificate and a key, and they need it", "TLSAddr", "TLSCert", "TLSKey")
	} else if c.TLSAddr != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			bad(err.Error(), "TLSCert", "TLSKey")
		}
	}
	if ip := net.ParseIP(c.RelayIP); ip == nil || ip.IsUnspecified() {
		bad("must be the IP address peers reach this server at (not 0.0.0.0)", "RelayIP")
	}
	if c.RelayBind != "" && net.ParseIP(c.RelayBind) == nil {
		bad("must be an IP address", "RelayBind")
	}
	if c.PortMin < 1 || c.PortMax > 65535 || c.PortMin > c.PortMax {
		bad("must be a range within 1–65535", "PortMin", "PortMax")
	}
	if c.UserQuota < 0 {
		bad("must not be negative", "UserQuota")
	}
	if _, err := parseCIDRs(c.AllowPeerCIDRs); err != nil {
		bad(err.Error(), "AllowPeerCIDRs")
	}
	return errors.Join(errs...)
}

// parseCIDRs parses turn.allow_peer_cidrs.
func parseCIDRs(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
