package turnserver

import (
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// authenticate checks TURN REST credentials (credentials.go) as
// turn.AuthHandler. The expiry is checked on Allocate only: a live
// allocation's Refresh, CreatePermission and ChannelBind keep working with
// the credential it was made with, so a relayed call outlives the
// credential's lifetime (the client's credential is only ever used for
// this allocation, which ends when the client stops refreshing it).
// Returning the user as the user id names it in the allocation's events.
func (s *Server) authenticate(ra *turn.RequestAttributes) (userID string, key []byte, ok bool) {
	expiry, user, err := parseUsername(ra.Username)
	if err == nil && ra.Realm == s.cfg.Realm && (ra.Method != stun.MethodAllocate || time.Now().Before(expiry)) {
		return user, turn.GenerateAuthKey(ra.Username, ra.Realm, Password(s.cfg.Secret, ra.Username)), true
	}
	// pion reports a refusal here to nobody; a wrong password, to onAuth.
	s.metrics.authFailures.WithLabelValues(ra.Method.String()).Inc()
	return "", nil, false
}
