package gateway

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// defaultTURNTTL is the lifetime of TURN REST credentials when a server's
// TTL is not set.
const defaultTURNTTL = 12 * time.Hour

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
			srv.Username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
			mac := hmac.New(sha1.New, []byte(s.Secret))
			mac.Write([]byte(srv.Username))
			srv.Credential = base64.StdEncoding.EncodeToString(mac.Sum(nil))
		}
		out = append(out, srv)
	}
	return out
}
