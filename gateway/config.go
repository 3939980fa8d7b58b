package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/internal/fielderr"
	"github.com/callmesh/callmesh/messages"
)

// Config configures a gateway. DefaultConfig documents the defaults.
type Config struct {
	// Prefix names subjects and buckets (messages.NewNames).
	Prefix string
	// Name is the gateway's name in the NATS permissions: the subjects
	// private to it lie under <prefix>.gw.<Name>. (messages.GatewayRoot),
	// which its NATS login alone may subscribe to (deploy/nats-auth.conf).
	// Empty means "gateway".
	Name string
	// ID is the gateway's id, messages.NewGatewayID(Name); empty makes a
	// fresh one. Its NATS connection must use Names.GatewayInbox(ID) as
	// inbox prefix (nats.CustomInboxPrefix) where the NATS permissions
	// confine gateways: that is the only inbox they let it read.
	ID string
	// Auth verifies client tokens.
	Auth AuthConfig
	// ExpiryWarning is how long before a session's token-expiry close (its
	// exp plus Auth.Leeway; close 4002) the client is sent expiring, once
	// per token, so it can refresh; at once when the token is installed
	// with less than that left. 0 sends no warning.
	ExpiryWarning time.Duration
	// ICEServers are handed to clients in welcome.
	ICEServers []ICEServerConfig
	// ICETransportPolicy is RTCPeerConnection's iceTransportPolicy, handed
	// to clients in welcome: "all" (the default), or "relay" to make every
	// call go through TURN.
	ICETransportPolicy string
	// RingTimeout is advertised in welcome; the router enforces it.
	RingTimeout time.Duration
	// ResumeGrace is how long a dropped connection keeps its identity and
	// calls before they end with disconnected.
	ResumeGrace time.Duration
	// Heartbeat is how often the gateway refreshes its presence key;
	// HeartbeatTTL is how long the key outlives the last refresh (whole
	// seconds).
	Heartbeat    time.Duration
	HeartbeatTTL time.Duration
	// DrainTimeout bounds how long Shutdown waits for clients told goaway
	// to resume on other gateways before it closes the rest with 1012.
	DrainTimeout time.Duration
	// MaxMessageBytes bounds one WebSocket frame (larger: close 1009).
	MaxMessageBytes int64
	// MaxDataBytes bounds an envelope's data (larger: error too_large).
	MaxDataBytes int
	// SendQueue bounds the per-connection queue of outgoing frames (those
	// queued and those being written); a client that lets it fill is closed
	// with 4003. The queue takes memory as frames come, not up front.
	SendQueue int
	// MessageRate and MessageBurst are each connection's token bucket for
	// client messages: beyond it a message is refused with rate_limited, and
	// a connection that keeps sending into a refusing bucket (more than
	// MessageBurst refusals beyond a trickle) is closed with 1008.
	MessageRate  float64
	MessageBurst int
	// ByteRate and ByteBurst are each connection's token bucket for the
	// bytes of client frames. Both buckets are checked before a frame is
	// decoded: a frame over either is refused with rate_limited (and counts
	// towards the 1008 close) without being decoded. ByteBurst must be at
	// least MaxMessageBytes, so that a full bucket passes any legal frame.
	ByteRate  float64
	ByteBurst int
	// InviteRate and InviteBurst bound the invites of one user on one
	// gateway (refused with rate_limited).
	InviteRate  float64
	InviteBurst int
	// MaxConnsPerUser bounds a user's connections across the mesh: a
	// connection over it is closed with 4004 (the newest is refused). The
	// count is checked in the compare-and-set that registers the connection
	// in presence, so simultaneous connects never overshoot; a connection
	// that cannot be counted is closed with 1011. 0 means no limit.
	MaxConnsPerUser int
	// MaxConns bounds this gateway's connections: over it, /ws answers 503
	// before the upgrade. 0 means no limit.
	MaxConns int
	// AddrConnectRate and AddrConnectBurst bound the connect and resume
	// attempts (requests to /ws) from one source address: the TCP peer's
	// IPv4 address, or its IPv6 /64. They are checked before the token is
	// verified. UserConnectRate and UserConnectBurst bound those of one
	// user on this gateway, checked once the token is verified. Over
	// either, /ws answers 429 with Retry-After before the upgrade. A rate
	// of 0 means no limit. Behind a reverse proxy every client has the
	// proxy's address: raise or disable the address limit there.
	AddrConnectRate  float64
	AddrConnectBurst int
	UserConnectRate  float64
	UserConnectBurst int
	// WriteTimeout bounds one frame write.
	WriteTimeout time.Duration
	// PingInterval is how often the gateway pings each client to notice dead
	// TCP connections.
	PingInterval time.Duration
	// RouterTimeout is the whole budget of one request to the routers,
	// retries included; RouterAttempt bounds each try.
	RouterTimeout time.Duration
	RouterAttempt time.Duration
	// OriginPatterns lists the browser origins (host patterns, as in
	// coder/websocket AcceptOptions) allowed besides the gateway's own.
	OriginPatterns []string
	// Demo serves the demo page at / (the client library /callmesh.js is
	// always served).
	Demo bool
	// DevTokens, when set, serves GET /dev/token?user=NAME minting tokens
	// with it. For `callmesh dev` only: anyone can become anyone.
	DevTokens *MintConfig
	// DevTokenTTL is the lifetime of a dev token.
	DevTokenTTL time.Duration
	// Logger receives the gateway's logs (slog.Default() when nil).
	Logger *slog.Logger
	// Metrics registers the gateway's metrics and is served at /metrics
	// when it is also a prometheus.Gatherer (none when nil).
	Metrics prometheus.Registerer
}

// ICEServerConfig is one ICE server. With Secret set (TURN REST API, as in
// coturn's use-auth-secret), each client gets its own time-limited
// username and credential instead of Username/Credential.
type ICEServerConfig struct {
	URLs       []string      `koanf:"urls"`
	Username   string        `koanf:"username"`
	Credential string        `koanf:"credential"`
	Secret     string        `koanf:"secret"`
	TTL        time.Duration `koanf:"ttl"`
}

// DefaultConfig returns the defaults: HS256 auth with 30 s leeway (a secret
// must still be set), the expiry warning 60 s before a token's close,
// Google's public STUN server, 30 s ring timeout, 10 s resume grace, 1 s
// heartbeat with 3 s TTL, 10 s drain, 64 KiB frames, 32 KiB data, 256
// queued frames, 50 messages/s (burst 200), 32 KiB/s (burst 256 KiB) and
// 1 invite/s (burst 10), 10 connections per user, 100 000 per gateway, 20
// connects/s per address (burst 200) and 1/s per user (burst 10), 5 s write
// timeout, 25 s pings, 5 s router budget (1 s a try).
//
// The byte bucket is sized for signaling: an SDP offer or answer is 5–10
// KB (tens of KB with many media sections), an ICE candidate about 200 B,
// so setting up a call costs a client some 10–40 KB, and a renegotiation
// as much again. 256 KiB lets a client set up several calls or
// renegotiate several times back to back, 32 KiB/s lets it send a
// maximal data field every second for as long as it likes: far more than
// signaling needs, and a hundredth of what the message rate alone would
// let through in 64 KiB frames.
//
// The connect buckets let every device of a user (max 10) reconnect at
// once, and a user reconnect once a second for good; an address, such as
// an office behind one NAT, 200 at once and 20 a second.
func DefaultConfig() Config {
	return Config{
		Prefix:             messages.DefaultPrefix,
		Name:               "gateway",
		Auth:               AuthConfig{Alg: "HS256", Leeway: 30 * time.Second},
		ExpiryWarning:      time.Minute,
		ICEServers:         []ICEServerConfig{{URLs: []string{"stun:stun.l.google.com:19302"}}},
		ICETransportPolicy: "all",
		RingTimeout:        30 * time.Second,
		ResumeGrace:        10 * time.Second,
		Heartbeat:          time.Second,
		HeartbeatTTL:       3 * time.Second,
		DrainTimeout:       10 * time.Second,
		MaxMessageBytes:    64 << 10,
		MaxDataBytes:       messages.DefaultMaxData,
		SendQueue:          256,
		MessageRate:        50,
		MessageBurst:       200,
		InviteRate:         1,
		InviteBurst:        10,
		MaxConnsPerUser:    10,
		MaxConns:           100_000,
		WriteTimeout:       5 * time.Second,
		PingInterval:       25 * time.Second,
		RouterTimeout:      5 * time.Second,
		RouterAttempt:      time.Second,
		DevTokenTTL:        time.Hour,

		// Floods (limits.go): bytes per connection, connects per address and user.
		ByteRate:         32 << 10,
		ByteBurst:        256 << 10,
		AddrConnectRate:  20,
		AddrConnectBurst: 200,
		UserConnectRate:  1,
		UserConnectBurst: 10,
	}
}

// Validate reports every problem with c; New calls it. Each problem is a
// *fielderr.Error naming the fields it is about.
func (c *Config) Validate() error {
	var errs []error
	bad := func(reason string, fields ...string) { errs = append(errs, fielderr.New(reason, fields...)) }
	if c.Name != "" {
		if err := messages.ValidGatewayName(c.Name); err != nil {
			bad(strings.TrimPrefix(err.Error(), "messages: "), "Name")
		}
	}
	if c.ID != "" && !strings.HasPrefix(c.ID, c.name()+".") {
		bad(fmt.Sprintf("gateway id %q is not one of gateway name %q", c.ID, c.name()), "ID", "Name")
	}
	for _, d := range []struct {
		field string
		d     time.Duration
	}{
		{"RingTimeout", c.RingTimeout}, {"Heartbeat", c.Heartbeat}, {"WriteTimeout", c.WriteTimeout},
		{"PingInterval", c.PingInterval}, {"RouterTimeout", c.RouterTimeout}, {"RouterAttempt", c.RouterAttempt},
	} {
		if d.d <= 0 {
			bad("must be positive", d.field)
		}
	}
	if c.ResumeGrace < 0 {
		bad("must not be negative", "ResumeGrace")
	}
	if c.DrainTimeout < 0 {
		bad("must not be negative", "DrainTimeout")
	}
	if c.ExpiryWarning < 0 {
		bad("must not be negative", "ExpiryWarning")
	}
	if c.HeartbeatTTL < time.Second || c.HeartbeatTTL <= c.Heartbeat {
		bad("the TTL must be at least 1s and longer than the heartbeat", "HeartbeatTTL", "Heartbeat")
	}
	if c.MaxMessageBytes < 1024 {
		bad("must be at least 1024", "MaxMessageBytes")
	}
	if c.MaxDataBytes < 1 || int64(c.MaxDataBytes) > c.MaxMessageBytes {
		bad("data must be at least 1 byte and at most the largest message", "MaxDataBytes", "MaxMessageBytes")
	}
	// Token buckets: a connect rate of 0 means no limit; the others must limit.
	for _, r := range []struct {
		rate, burst string
		r           float64
		b           int
		zeroIsOff   bool
	}{
		{"MessageRate", "MessageBurst", c.MessageRate, c.MessageBurst, false},
		{"InviteRate", "InviteBurst", c.InviteRate, c.InviteBurst, false},
		{"ByteRate", "ByteBurst", c.ByteRate, c.ByteBurst, false},
		{"AddrConnectRate", "AddrConnectBurst", c.AddrConnectRate, c.AddrConnectBurst, true},
		{"UserConnectRate", "UserConnectBurst", c.UserConnectRate, c.UserConnectBurst, true},
	} {
		switch {
		case r.r < 0 && r.zeroIsOff:
			bad("must not be negative (0: no limit)", r.rate)
		case r.r <= 0 && !r.zeroIsOff:
			bad("must be positive", r.rate)
		case r.b < 1 && r.r > 0:
			bad("the burst must be at least 1 while the rate limits", r.burst, r.rate)
		}
	}
	if int64(c.ByteBurst) < c.MaxMessageBytes {
		bad("the burst must be at least the largest message, or some messages could never pass", "ByteBurst", "MaxMessageBytes")
	}
	if c.MaxConnsPerUser < 0 {
		bad("must not be negative", "MaxConnsPerUser")
	}
	if c.MaxConns < 0 {
		bad("must not be negative", "MaxConns")
	}
	for _, p := range c.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			bad(fmt.Sprintf("pattern %q: %v", p, err), "OriginPatterns")
		}
	}
	if c.SendQueue < 8 {
		bad("must be at least 8", "SendQueue")
	}
	if c.ICETransportPolicy != "" && c.ICETransportPolicy != "all" && c.ICETransportPolicy != "relay" {
		bad("must be all or relay", "ICETransportPolicy")
	}
	for i, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			bad(fmt.Sprintf("server %d has no urls", i), "ICEServers")
		}
	}
	return errors.Join(errs...)
}

// name is the gateway's name, defaulted.
func (c *Config) name() string {
	if c.Name == "" {
		return "gateway"
	}
	return c.Name
}
