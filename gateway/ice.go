package gateway

import (
	"time"

	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/turnserver"
)

// defaultTURNTTL is the lifetime of TURN REST credentials when a server's
// TTL is not set.
const defaultTURNTTL = 12 * time.Hour

// icePolicy is the ICE transport policy welcome hands out.
func (c *Config) icePolicy() string {
	if c.ICETransportPolicy == "" {
		return "all"
	}
	return c.ICETransportPolicy
}

// iceServers returns the iceServers for user at now. Servers with a Secret
// get TURN REST API credentials (username "<expiry unix>:<user>", credential
// base64(HMAC-SHA1(secret, username))), so no long-lived TURN password ever
// reaches a client.
func iceServers(cfg []ICEServerConfig, user string, now time.Time) []messages.ICEServer {
	out := make([]messages.ICEServer, 0, len(cfg))
	for _, s := range cfg {
		srv := messages.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
		if s.Secret != "" {
			ttl := s.TTL
			if ttl <= 0 {
				ttl = defaultTURNTTL
			}
			srv.Username, srv.Credential = turnserver.Credentials(s.Secret, user, now.Add(ttl))
		}
		out = append(out, srv)
	}
	return out
}
