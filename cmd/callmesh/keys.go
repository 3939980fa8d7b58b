package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/callmesh/callmesh/gateway"
)

// Config is everything the subcommands can be told, one field per key of
// settings. loadConfig fills it; the components get their own configs from
// it (components.go).
type Config struct {
	NATS natsConfig
	HTTP struct {
		Addr             string
		OriginPatterns   []string
		Demo             bool
		DrainTimeout     time.Duration
		HandshakeTimeout time.Duration
	}
	JWT struct {
		Alg, Secret, KeyFile, JWKSURL string
		JWKSRefresh                   time.Duration
		Issuer, Audience              string
		Leeway, ExpiryWarning         time.Duration
		MaxTokenBytes                 int
		SigningKeyFile                string
	}
	ICE struct {
		Servers         []gateway.ICEServerConfig
		TransportPolicy string
	}
	Call struct {
		RingTimeout, ResumeGrace, EndedRetention time.Duration
	}
	Rooms struct {
		MaxMembers   int
		EmptyTimeout time.Duration
		Exclusive    bool
	}
	Events struct {
		Retention time.Duration
		MaxBytes  int
	}
	Webhook struct {
		URL, Secret, Durable, HTTPAddr string
		Timeout                        time.Duration
		MaxAttempts                    int
	}
	TURN struct {
		Realm, Secret, RelayIP, RelayBind          string
		UDPAddr, TCPAddr, TLSAddr, TLSCert, TLSKey string
		PortMin, PortMax, UserQuota                int
		AllowPeerCIDRs                             []string
		HTTPAddr                                   string
	}
	Presence struct {
		Heartbeat, TTL, Resync time.Duration
	}
	Limits struct {
		MaxMessageBytes, MaxDataBytes, SendQueue int
		MessageRate, InviteRate                  float64
		MessageBurst, InviteBurst                int
		MaxConnsPerUser, MaxConns                int
		WriteTimeout, PingInterval               time.Duration

		ByteRate, AddrConnectRate, UserConnectRate    float64
		ByteBurst, AddrConnectBurst, UserConnectBurst int
	}
	Gateway struct {
		Name string
	}
	Router struct {
		Timeout, Attempt time.Duration
		Workers          int
		HTTPAddr         string
	}
	Log struct {
		Level, Format string
	}
	Debug struct {
		Pprof bool
	}
	Dev struct {
		Gateways int
		StoreDir string
		NATSPort int
		TokenTTL time.Duration
		TURN     bool
	}

	// origin is where each key's value came from, for errors (Config.source):
	// "file PATH", "$CALLMESH_X" or "flag --key"; a key not in it has its
	// default.
	origin map[string]string
}

// natsConfig is where NATS is and how to log in to it.
type natsConfig struct {
	URL, Prefix                            string
	Replicas                               int
	Creds, User, Password, Token, NKeySeed string
	TLSCA, TLSCert, TLSKey                 string
}

// setting is one configuration key. Its default is written as it would be
// in an environment variable or a flag, and goes through the same parser.
type setting struct {
	key   string
	def   string
	desc  string
	field func(*Config) any // pointer to the field the key sets
}

// settings is the one list of keys: it makes the defaults, the environment
// mapping, the flags and the `callmesh help config` reference.
var settings = []setting{
	{"nats.url", "nats://127.0.0.1:4222", "NATS server URL; comma-separate several for a cluster (dev uses its embedded server)", func(c *Config) any { return &c.NATS.URL }},
	{"nats.prefix", "callmesh", "prefix of every subject and KV bucket, for clusters shared with other apps", func(c *Config) any { return &c.NATS.Prefix }},
	{"nats.replicas", "1", "replicas of the KV buckets (3 on a 3-node cluster)", func(c *Config) any { return &c.NATS.Replicas }},
	{"nats.creds", "", "NATS credentials file (JWT + nkey)", func(c *Config) any { return &c.NATS.Creds }},
	{"nats.user", "", "NATS user name (with nats.password)", func(c *Config) any { return &c.NATS.User }},
	{"nats.password", "", "NATS password", func(c *Config) any { return &c.NATS.Password }},
	{"nats.token", "", "NATS authentication token", func(c *Config) any { return &c.NATS.Token }},
	{"nats.nkey_seed_file", "", "file holding a NATS nkey seed", func(c *Config) any { return &c.NATS.NKeySeed }},
	{"nats.tls_ca", "", "PEM file of CAs that sign the NATS server's certificate", func(c *Config) any { return &c.NATS.TLSCA }},
	{"nats.tls_cert", "", "PEM client certificate for NATS (with nats.tls_key)", func(c *Config) any { return &c.NATS.TLSCert }},
	{"nats.tls_key", "", "PEM private key of nats.tls_cert", func(c *Config) any { return &c.NATS.TLSKey }},

	{"http.addr", "127.0.0.1:8080", "gateway listen address; dev gateway i listens on port+i, port 0 picks free ports", func(c *Config) any { return &c.HTTP.Addr }},
	{"http.demo", "false", "serve the demo page at / (dev always does); outside dev it signs in with a pasted token (callmesh token); /callmesh.js is always served", func(c *Config) any { return &c.HTTP.Demo }},
	{"http.drain_timeout", "10s", "on SIGTERM a gateway sends goaway and waits this long for clients to resume elsewhere, then closes the rest with 1012 (dev stops at once)", func(c *Config) any { return &c.HTTP.DrainTimeout }},
	{"http.origin_patterns", "", "browser origins allowed besides the gateway's own (host patterns; dev allows * when empty)", func(c *Config) any { return &c.HTTP.OriginPatterns }},
	{"http.handshake_timeout", "10s", "a client must send its whole HTTP request (the WebSocket handshake) within this, or the connection is closed", func(c *Config) any { return &c.HTTP.HandshakeTimeout }},

	{"jwt.alg", "HS256", "the one accepted JWT algorithm: HS256/384/512, RS*, PS*, ES256/384/512 or EdDSA", func(c *Config) any { return &c.JWT.Alg }},
	{"jwt.secret", "", "HS* shared secret, at least 32 bytes (dev generates one when empty)", func(c *Config) any { return &c.JWT.Secret }},
	{"jwt.key_file", "", "PEM public key or certificate for RS*/PS*/ES*/EdDSA", func(c *Config) any { return &c.JWT.KeyFile }},
	{"jwt.jwks_url", "", "JWK Set URL for RS*/PS*/ES*/EdDSA (tokens need a kid)", func(c *Config) any { return &c.JWT.JWKSURL }},
	{"jwt.jwks_refresh", "5m", "how often the JWK Set is fetched again", func(c *Config) any { return &c.JWT.JWKSRefresh }},
	{"jwt.issuer", "", "required iss claim (and the iss of minted tokens)", func(c *Config) any { return &c.JWT.Issuer }},
	{"jwt.audience", "", "required aud claim (and the aud of minted tokens)", func(c *Config) any { return &c.JWT.Audience }},
	{"jwt.leeway", "30s", "clock skew allowed for exp, nbf and iat", func(c *Config) any { return &c.JWT.Leeway }},
	{"jwt.expiry_warning", "1m", "a session gets expiring this long before its token's exp + leeway closes it with 4002, so it can refresh (0: no warning)", func(c *Config) any { return &c.JWT.ExpiryWarning }},
	{"jwt.max_token_bytes", "8192", "longer tokens are refused unparsed", func(c *Config) any { return &c.JWT.MaxTokenBytes }},
	{"jwt.signing_key_file", "", "PEM private key for `token` (and dev tokens) with RS*/PS*/ES*/EdDSA", func(c *Config) any { return &c.JWT.SigningKeyFile }},

	{"ice.transport_policy", "all", "RTCPeerConnection iceTransportPolicy handed out in welcome: all, or relay to send every call through TURN", func(c *Config) any { return &c.ICE.TransportPolicy }},
	{"ice.servers", `[{"urls":["stun:stun.l.google.com:19302"]}]`, "ICE servers for clients: list of {urls, username, credential, secret, ttl}; secret makes per-user TURN REST credentials valid for ttl (default 12h)", func(c *Config) any { return &c.ICE.Servers }},

	{"call.ring_timeout", "30s", "an unanswered call ends with no_answer after this", func(c *Config) any { return &c.Call.RingTimeout }},
	{"call.resume_grace", "10s", "how long a dropped connection may resume before its calls end", func(c *Config) any { return &c.Call.ResumeGrace }},
	{"call.ended_retention", "1m", "ended calls are kept this long so retried requests get the same answer", func(c *Config) any { return &c.Call.EndedRetention }},

	{"presence.heartbeat", "1s", "how often a gateway refreshes its liveness key", func(c *Config) any { return &c.Presence.Heartbeat }},
	{"presence.ttl", "3s", "a gateway silent this long is dead (whole seconds, more than the heartbeat)", func(c *Config) any { return &c.Presence.TTL }},
	{"presence.resync", "30s", "routers re-read all calls and presence this often, repairing missed watch events", func(c *Config) any { return &c.Presence.Resync }},

	{"limits.max_message_bytes", "65536", "largest client frame (larger: close 1009)", func(c *Config) any { return &c.Limits.MaxMessageBytes }},
	{"limits.max_data_bytes", "32768", "largest data field of a message (larger: error too_large)", func(c *Config) any { return &c.Limits.MaxDataBytes }},
	{"limits.send_queue", "256", "frames queued per connection; a client that lets it fill is closed with 4003", func(c *Config) any { return &c.Limits.SendQueue }},
	{"limits.message_rate", "50", "client messages per second per connection; more get error rate_limited", func(c *Config) any { return &c.Limits.MessageRate }},
	{"limits.message_burst", "200", "burst of limits.message_rate; a connection that keeps sending into the limit is closed with 1008", func(c *Config) any { return &c.Limits.MessageBurst }},
	{"limits.byte_rate", "32768", "bytes of client frames per second per connection, checked before a frame is decoded; more get error rate_limited", func(c *Config) any { return &c.Limits.ByteRate }},
	{"limits.byte_burst", "262144", "burst of limits.byte_rate, at least limits.max_message_bytes", func(c *Config) any { return &c.Limits.ByteBurst }},
	{"limits.invite_rate", "1", "invites per second per user on one gateway; more get error rate_limited", func(c *Config) any { return &c.Limits.InviteRate }},
	{"limits.invite_burst", "10", "burst of limits.invite_rate", func(c *Config) any { return &c.Limits.InviteBurst }},
	{"limits.max_conns_per_user", "10", "connections one user may hold across the mesh; the newest over it is closed with 4004 (0: no limit)", func(c *Config) any { return &c.Limits.MaxConnsPerUser }},
	{"limits.max_conns", "100000", "connections one gateway accepts; over it /ws answers 503 before the upgrade (0: no limit)", func(c *Config) any { return &c.Limits.MaxConns }},
	{"limits.addr_connect_rate", "20", "connect and resume attempts per second from one source address (the TCP peer; an IPv6 /64), checked before the token; more get HTTP 429 (0: no limit; behind a reverse proxy every client has its address)", func(c *Config) any { return &c.Limits.AddrConnectRate }},
	{"limits.addr_connect_burst", "200", "burst of limits.addr_connect_rate", func(c *Config) any { return &c.Limits.AddrConnectBurst }},
	{"limits.user_connect_rate", "1", "connect and resume attempts per second of one user on one gateway; more get HTTP 429 (0: no limit)", func(c *Config) any { return &c.Limits.UserConnectRate }},
	{"limits.user_connect_burst", "10", "burst of limits.user_connect_rate", func(c *Config) any { return &c.Limits.UserConnectBurst }},
	{"limits.write_timeout", "5s", "deadline of one frame write", func(c *Config) any { return &c.Limits.WriteTimeout }},
	{"limits.ping_interval", "25s", "how often the gateway pings each client", func(c *Config) any { return &c.Limits.PingInterval }},

	{"gateway.name", "", "the gateway's name in the NATS permissions: it alone may read <nats.prefix>.gw.<name>.> (deploy/nats-auth.conf); empty: nats.user, or gateway", func(c *Config) any { return &c.Gateway.Name }},

	{"rooms.max_members", "8", "most members of one room (2 to 64; a full mesh works up to about 6–8); stored in a room when it is created", func(c *Config) any { return &c.Rooms.MaxMembers }},
	{"rooms.empty_timeout", "30s", "an empty room keeps its settings (locked, invite-only) this long, then ends", func(c *Config) any { return &c.Rooms.EmptyTimeout }},
	{"rooms.exclusive", "true", "a user in a room is busy for 1:1 calls and the reverse; false: rooms and 1:1 calls ignore each other", func(c *Config) any { return &c.Rooms.Exclusive }},
	{"events.retention", "168h", "call and room events are kept this long in the events stream (docs/events.md)", func(c *Config) any { return &c.Events.Retention }},
	{"events.max_bytes", "1073741824", "the events stream's size limit; the oldest events go first", func(c *Config) any { return &c.Events.MaxBytes }},
	{"webhook.url", "", "callmesh webhook: the endpoint every event is POSTed to (docs/events.md)", func(c *Config) any { return &c.Webhook.URL }},
	{"webhook.secret", "", "callmesh webhook: HMAC-SHA256 key of the Callmesh-Signature header (at least 16 bytes)", func(c *Config) any { return &c.Webhook.Secret }},
	{"webhook.timeout", "10s", "callmesh webhook: one POST's time limit", func(c *Config) any { return &c.Webhook.Timeout }},
	{"webhook.max_attempts", "10", "callmesh webhook: POSTs of one event before it is given up (retries after 1s, 5s, 30s, 2m, then every 10m)", func(c *Config) any { return &c.Webhook.MaxAttempts }},
	{"webhook.durable", "callmesh-webhook", "callmesh webhook: the stream consumer's name; forwarders sharing it share the work", func(c *Config) any { return &c.Webhook.Durable }},
	{"webhook.http_addr", "127.0.0.1:8479", "callmesh webhook: listen address for /healthz and /metrics; empty: none", func(c *Config) any { return &c.Webhook.HTTPAddr }},
	{"turn.udp_addr", "0.0.0.0:3478", "callmesh turn: UDP listen address for clients (empty: none)", func(c *Config) any { return &c.TURN.UDPAddr }},
	{"turn.tcp_addr", "0.0.0.0:3478", "callmesh turn: TCP listen address for clients (empty: none)", func(c *Config) any { return &c.TURN.TCPAddr }},
	{"turn.tls_addr", "", "callmesh turn: TURN over TLS listen address, e.g. 0.0.0.0:5349 (with turn.tls_cert and turn.tls_key)", func(c *Config) any { return &c.TURN.TLSAddr }},
	{"turn.tls_cert", "", "callmesh turn: PEM certificate chain for turn.tls_addr", func(c *Config) any { return &c.TURN.TLSCert }},
	{"turn.tls_key", "", "callmesh turn: PEM private key for turn.tls_addr", func(c *Config) any { return &c.TURN.TLSKey }},
	{"turn.relay_ip", "", "callmesh turn: the IP address peers reach relays at (the server's public address); required", func(c *Config) any { return &c.TURN.RelayIP }},
	{"turn.relay_bind", "", "callmesh turn: local address relay sockets bind to (default turn.relay_ip; 0.0.0.0 behind 1:1 NAT)", func(c *Config) any { return &c.TURN.RelayBind }},
	{"turn.port_min", "49152", "callmesh turn: lowest relay port", func(c *Config) any { return &c.TURN.PortMin }},
	{"turn.port_max", "65535", "callmesh turn: highest relay port", func(c *Config) any { return &c.TURN.PortMax }},
	{"turn.realm", "callmesh", "callmesh turn: TURN realm", func(c *Config) any { return &c.TURN.Realm }},
	{"turn.secret", "", "callmesh turn: shared secret of the TURN REST credentials: the secret of the ice.servers entry naming this server (at least 16 bytes)", func(c *Config) any { return &c.TURN.Secret }},
	{"turn.user_quota", "10", "callmesh turn: most live allocations per user (0: no limit)", func(c *Config) any { return &c.TURN.UserQuota }},
	{"turn.allow_peer_cidrs", "", "callmesh turn: peer networks clients may relay to although loopback/private/link-local (e.g. your office LAN); none by default", func(c *Config) any { return &c.TURN.AllowPeerCIDRs }},
	{"turn.http_addr", "127.0.0.1:8478", "callmesh turn: listen address for /healthz and /metrics; empty: none", func(c *Config) any { return &c.TURN.HTTPAddr }},
	{"router.timeout", "5s", "a gateway's whole budget for one router request, retries included", func(c *Config) any { return &c.Router.Timeout }},
	{"router.attempt", "1s", "a gateway's budget for one try of a router request", func(c *Config) any { return &c.Router.Attempt }},
	{"router.workers", "64", "requests one router handles at once", func(c *Config) any { return &c.Router.Workers }},
	{"router.http_addr", "127.0.0.1:8081", "router listen address for /healthz and /metrics; empty: none (dev serves the router's metrics with gateway 0's)", func(c *Config) any { return &c.Router.HTTPAddr }},

	{"log.level", "info", "debug, info, warn or error", func(c *Config) any { return &c.Log.Level }},
	{"log.format", "text", "text or json", func(c *Config) any { return &c.Log.Format }},

	{"debug.pprof", "false", "serve Go's profiles (net/http/pprof) at /debug/pprof/ on every gateway's listener and on router.http_addr; only where those are private", func(c *Config) any { return &c.Debug.Pprof }},

	{"dev.gateways", "1", "dev: how many gateways to run", func(c *Config) any { return &c.Dev.Gateways }},
	{"dev.store_dir", "", "dev: JetStream directory, kept (default: a temp dir removed on exit)", func(c *Config) any { return &c.Dev.StoreDir }},
	{"dev.nats_port", "4222", "dev: embedded NATS port on 127.0.0.1; a random one if busy or 0", func(c *Config) any { return &c.Dev.NATSPort }},
	{"dev.turn", "true", "dev: run the built-in TURN server on 127.0.0.1 (port of turn.udp_addr, a free one if busy) and hand it out in welcome", func(c *Config) any { return &c.Dev.TURN }},
	{"dev.token_ttl", "1h", "dev: lifetime of tokens from /dev/token", func(c *Config) any { return &c.Dev.TokenTTL }},
}

// Short flag aliases: flag name → key.
var flagAliases = map[string]string{
	"http":     "http.addr",
	"gateways": "dev.gateways",
}

const (
	envPrefix = "CALLMESH_"
	// envConfig names the config file; it is not a key.
	envConfig = envPrefix + "CONFIG"
)

// envName is the environment variable of key: CALLMESH_ and the key in
// upper case with dots as underscores (call.ring_timeout →
// CALLMESH_CALL_RING_TIMEOUT). The reverse is looked up in envKeys, never
// computed, because keys hold underscores too.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

var (
	byKey   = map[string]*setting{} // key → setting
	envKeys = map[string]string{}   // environment variable → key
)

func init() {
	for i := range settings {
		s := &settings[i]
		byKey[s.key] = s
		env := envName(s.key)
		if other, dup := envKeys[env]; dup || env == envConfig {
			panic(fmt.Sprintf("keys %q and %q share the variable %s", s.key, other, env))
		}
		envKeys[env] = s.key
	}
}

// typeName describes the value a key takes, for the reference.
func (s *setting) typeName() string {
	switch s.field(new(Config)).(type) {
	case *int:
		return "integer"
	case *bool:
		return "boolean"
	case *float64:
		return "number"
	case *time.Duration:
		return "duration"
	case *[]string:
		return "list"
	case *[]gateway.ICEServerConfig:
		return "ICE list"
	}
	return "string"
}

// writeReference prints the configuration reference as markdown, for
// `callmesh help config` and the README.
func writeReference(w io.Writer) {
	fmt.Fprint(w, `Every key can be set in the YAML file (--config path or CALLMESH_CONFIG; nested maps
or dotted keys), in the environment (CALLMESH_ and the key in upper case, dots as
underscores) and as a flag named like the key (--call.ring_timeout 5s). Later wins:
defaults < file < environment < flags. An unknown CALLMESH_ variable or file key is
an error. Durations are written like 30s, 1m or 1h30m. A list is a YAML list, or in
the environment and flags a JSON array or a comma-separated string. ice.servers is
a YAML list, or JSON in the environment and flags, e.g.
CALLMESH_ICE_SERVERS='[{"urls":["turn:turn.example.com:3478"],"secret":"s","ttl":"1h"}]'.
Short flags: --http = --http.addr, --gateways = --dev.gateways.

| key | type | default | environment | description |
|---|---|---|---|---|
`)
	for _, s := range settings {
		def := "`" + s.def + "`"
		if s.def == "" {
			def = ""
		}
		fmt.Fprintf(w, "| `%s` | %s | %s | `%s` | %s |\n",
			s.key, s.typeName(), mdEscape(def), envName(s.key), mdEscape(s.desc))
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
