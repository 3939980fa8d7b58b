package main

import (
	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/router"
	"github.com/callmesh/callmesh/turnserver"
)

// componentFields maps the fields of one component's config, as its
// validation names them (*fielderr.Error), to the keys that set them
// (components.go, turn.go and events.go build the configs from the keys).
// A field without a key is set by callmesh itself.
type componentFields struct {
	config any // a zero config, for TestFieldKeys
	keys   map[string]string
}

var (
	gatewayFields = componentFields{gateway.Config{}, map[string]string{
		"Prefix":             "nats.prefix",
		"Name":               "gateway.name", // or nats.user (Config.gatewayName)
		"ExpiryWarning":      "jwt.expiry_warning",
		"ICEServers":         "ice.servers",
		"ICETransportPolicy": "ice.transport_policy",
		"RingTimeout":        "call.ring_timeout",
		"ResumeGrace":        "call.resume_grace",
		"Heartbeat":          "presence.heartbeat",
		"HeartbeatTTL":       "presence.ttl",
		"DrainTimeout":       "http.drain_timeout",
		"MaxMessageBytes":    "limits.max_message_bytes",
		"MaxDataBytes":       "limits.max_data_bytes",
		"SendQueue":          "limits.send_queue",
		"MessageRate":        "limits.message_rate",
		"MessageBurst":       "limits.message_burst",
		"ByteRate":           "limits.byte_rate",
		"ByteBurst":          "limits.byte_burst",
		"InviteRate":         "limits.invite_rate",
		"InviteBurst":        "limits.invite_burst",
		"MaxConnsPerUser":    "limits.max_conns_per_user",
		"MaxConns":           "limits.max_conns",
		"AddrConnectRate":    "limits.addr_connect_rate",
		"AddrConnectBurst":   "limits.addr_connect_burst",
		"UserConnectRate":    "limits.user_connect_rate",
		"UserConnectBurst":   "limits.user_connect_burst",
		"WriteTimeout":       "limits.write_timeout",
		"PingInterval":       "limits.ping_interval",
		"RouterTimeout":      "router.timeout",
		"RouterAttempt":      "router.attempt",
		"OriginPatterns":     "http.origin_patterns",
		"Demo":               "http.demo",
		"DevTokenTTL":        "dev.token_ttl",
	}}
	authFields = componentFields{gateway.AuthConfig{}, map[string]string{
		"Alg":           "jwt.alg",
		"Secret":        "jwt.secret",
		"KeyFile":       "jwt.key_file",
		"JWKSURL":       "jwt.jwks_url",
		"JWKSRefresh":   "jwt.jwks_refresh",
		"Issuer":        "jwt.issuer",
		"Audience":      "jwt.audience",
		"Leeway":        "jwt.leeway",
		"MaxTokenBytes": "jwt.max_token_bytes",
	}}
	mintFields = componentFields{gateway.MintConfig{}, map[string]string{
		"Alg":            "jwt.alg",
		"Secret":         "jwt.secret",
		"PrivateKeyFile": "jwt.signing_key_file",
		"Issuer":         "jwt.issuer",
		"Audience":       "jwt.audience",
	}}
	routerFields = componentFields{router.Config{}, map[string]string{
		"Prefix":             "nats.prefix",
		"RingTimeout":        "call.ring_timeout",
		"ResumeGrace":        "call.resume_grace",
		"PresenceTTL":        "presence.ttl",
		"EndedRetention":     "call.ended_retention",
		"Resync":             "presence.resync",
		"Workers":            "router.workers",
		"Replicas":           "nats.replicas",
		"Rooms.MaxMembers":   "rooms.max_members",
		"Rooms.EmptyTimeout": "rooms.empty_timeout",
		"Rooms.Exclusive":    "rooms.exclusive",
		"Events.Retention":   "events.retention",
		"Events.MaxBytes":    "events.max_bytes",
	}}
	turnFields = componentFields{turnserver.Config{}, map[string]string{
		"Realm":          "turn.realm",
		"Secret":         "turn.secret",
		"UDPAddr":        "turn.udp_addr",
		"TCPAddr":        "turn.tcp_addr",
		"TLSAddr":        "turn.tls_addr",
		"TLSCert":        "turn.tls_cert",
		"TLSKey":         "turn.tls_key",
		"RelayIP":        "turn.relay_ip",
		"RelayBind":      "turn.relay_bind",
		"PortMin":        "turn.port_min",
		"PortMax":        "turn.port_max",
		"UserQuota":      "turn.user_quota",
		"AllowPeerCIDRs": "turn.allow_peer_cidrs",
	}}
	natsFields = componentFields{natsConfig{}, map[string]string{
		"URL":      "nats.url",
		"Prefix":   "nats.prefix",
		"Replicas": "nats.replicas",
		"Creds":    "nats.creds",
		"User":     "nats.user",
		"Password": "nats.password",
		"Token":    "nats.token",
		"NKeySeed": "nats.nkey_seed_file",
		"TLSCA":    "nats.tls_ca",
		"TLSCert":  "nats.tls_cert",
		"TLSKey":   "nats.tls_key",
	}}
	webhookFields = componentFields{events.WebhookConfig{}, map[string]string{
		"URL":         "webhook.url",
		"Secret":      "webhook.secret",
		"Timeout":     "webhook.timeout",
		"MaxAttempts": "webhook.max_attempts",
		"Durable":     "webhook.durable",
	}}
)

// secretKeys are the keys whose values errors never show.
var secretKeys = map[string]bool{
	"jwt.secret": true, "nats.password": true, "nats.token": true,
	"turn.secret": true, "webhook.secret": true, "ice.servers": true,
}
