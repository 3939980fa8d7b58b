// Package turnserver is callmesh's built-in TURN server (`callmesh turn`),
// built on github.com/pion/turn/v5. It accepts the TURN REST credentials
// the gateways hand out in welcome, checks their expiry on Allocate,
// bounds each user's allocations, refuses to relay to the operator's own
// networks unless told otherwise, and counts what it does.
package turnserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/callmesh/callmesh/internal/fielderr"
)

// Server is a running TURN server. Create it with Start; Close stops it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	peers   peerFilter
	quota   *quota
	turn    *turn.Server
	closed  atomic.Bool // Close has begun
	// Addrs are the addresses the listeners got, by network ("udp",
	// "tcp", "tls"): the configured ones, with a port 0 resolved.
	Addrs map[string]net.Addr
}

// Start validates cfg, opens the listeners and serves until Close.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("turn: config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	allow, _ := parseCIDRs(cfg.AllowPeerCIDRs) // Validate checked them
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("component", "turn"), metrics: newMetrics(cfg.Metrics),
		peers: peerFilter{allow: allow}, quota: newQuota(cfg.UserQuota), Addrs: map[string]net.Addr{},
	}
	bind := cfg.RelayBind
	if bind == "" {
		bind = cfg.RelayIP
	}
	relay := &relayPorts{
		RelayAddressGeneratorPortRange: &turn.RelayAddressGeneratorPortRange{
			RelayAddress: net.ParseIP(cfg.RelayIP), Address: bind, MinPort: uint16(cfg.PortMin), MaxPort: uint16(cfg.PortMax),
		},
		toPeer: s.metrics.relayedBytes.WithLabelValues("to_peer"), fromPeer: s.metrics.relayedBytes.WithLabelValues("from_peer"),
		toPeerPackets: s.metrics.relayedPacket.WithLabelValues("to_peer"), fromPeerPacks: s.metrics.relayedPacket.WithLabelValues("from_peer"),
	}
	var sc turn.ServerConfig
	var closers []func() error
	fail := func(err error) (*Server, error) {
		for _, c := range closers {
			_ = c()
		}
		return nil, err
	}
	if cfg.UDPAddr != "" {
		pc, err := net.ListenPacket("udp", cfg.UDPAddr)
		if err != nil {
			return fail(fmt.Errorf("turn: %w", fielderr.New(err.Error(), "UDPAddr")))
		}
		closers = append(closers, pc.Close)
		s.Addrs["udp"] = pc.LocalAddr()
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn: pc, RelayAddressGenerator: relay, PermissionHandler: s.permit,
		})
	}
	listen := func(network, addr string, wrap func(net.Listener) net.Listener) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("turn: %w", fielderr.New(err.Error(), strings.ToUpper(network)+"Addr"))
		}
		s.Addrs[network] = l.Addr()
		if wrap != nil {
			l = wrap(l)
		}
		closers = append(closers, l.Close)
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener: l, RelayAddressGenerator: relay, PermissionHandler: s.permit,
		})
		return nil
	}
	if cfg.TCPAddr != "" {
		if err := listen("tcp", cfg.TCPAddr, nil); err != nil {
			return fail(err)
		}
	}
	if cfg.TLSAddr != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fail(fmt.Errorf("turn: %w", fielderr.New(err.Error(), "TLSCert", "TLSKey")))
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if err := listen("tls", cfg.TLSAddr, func(l net.Listener) net.Listener { return tls.NewListener(l, tc) }); err != nil {
			return fail(err)
		}
	}
	sc.Realm = cfg.Realm
	sc.AuthHandler = s.authenticate
	sc.QuotaHandler = s.allowAllocation
	sc.LoggerFactory = pionLogs{s.log}
	sc.EventHandler = turn.EventHandler{
		OnAuth:              s.onAuth,
		OnAllocationCreated: s.onAllocated,
		OnAllocationDeleted: s.onDeallocated,
	}
	t, err := turn.NewServer(sc)
	if err != nil {
		return fail(fmt.Errorf("turn: %w", err))
	}
	s.turn = t
	s.log.Info("turn started", "udp", s.Addrs["udp"], "tcp", s.Addrs["tcp"], "tls", s.Addrs["tls"], "relay_ip", cfg.RelayIP,
		"ports", fmt.Sprintf("%d-%d", cfg.PortMin, cfg.PortMax))
	return s, nil
}

// Close stops the server and ends every allocation.
func (s *Server) Close() error {
	s.closed.Store(true)
	return s.turn.Close()
}

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return s.turn.AllocationCount() }

// permit is the PermissionHandler of every listener (peers.go).
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	if s.peers.allowed(peer) {
		return true
	}
	s.metrics.peersRefused.Inc()
	s.log.Debug("peer refused", "client", client, "peer", peer)
	return false
}

// allowAllocation is the QuotaHandler, for the user authenticate named.
func (s *Server) allowAllocation(user, _ string, _ net.Addr) bool {
	if s.quota.allow(user) {
		return true
	}
	s.metrics.refused.WithLabelValues("quota").Inc()
	return false
}

// onAuth counts the requests whose credentials authenticate named a key
// for but that the key did not sign (a wrong password).
func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if !verdict {
		s.metrics.authFailures.WithLabelValues(method).Inc()
		s.log.Debug("credentials refused", "client", src, "username", username, "method", method)
	}
}

func (s *Server) onAllocated(_, _ net.Addr, _, user, _ string, _ net.Addr, _ int) {
	s.quota.add(user, 1)
	s.metrics.allocations.Inc()
	s.metrics.allocated.Inc()
}

func (s *Server) onDeallocated(_, _ net.Addr, _, user, _ string) {
	s.quota.add(user, -1)
	s.metrics.allocations.Dec()
}

// pionLogs sends pion's logs to slog, at debug level but for errors.
type pionLogs struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(string)                 {}
func (l pionLogger) Tracef(string, ...any)        {}
func (l pionLogger) Debug(msg string)             { l.log.Debug(msg) }
func (l pionLogger) Debugf(f string, args ...any) { l.log.Debug(fmt.Sprintf(f, args...)) }
func (l pionLogger) Info(msg string)              { l.log.Debug(msg) }
func (l pionLogger) Infof(f string, args ...any)  { l.log.Debug(fmt.Sprintf(f, args...)) }
func (l pionLogger) Warn(msg string)              { l.log.Debug(msg) }
func (l pionLogger) Warnf(f string, args ...any)  { l.log.Debug(fmt.Sprintf(f, args...)) }
func (l pionLogger) Error(msg string)             { l.log.Warn(msg) }
func (l pionLogger) Errorf(f string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(f, args...)))
}
