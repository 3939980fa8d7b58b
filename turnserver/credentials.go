package turnserver

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// TURN REST credentials (draft-uberti-behave-turn-rest, coturn's
// use-auth-secret): the username is "<expiry in Unix seconds>:<user>", the
// password base64(HMAC-SHA1(secret, username)). The gateways hand them out
// in welcome (ice.servers entries with a secret); this server, sharing the
// secret, checks them without any per-user state.

// Credentials returns the username and password that let user allocate
// until expiry on a TURN server with secret.
func Credentials(secret, user string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	return username, Password(secret, username)
}

// Password is the password of username on a TURN server with secret.
func Password(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// errUsername: a username that is not "<expiry>:<user>".
var errUsername = errors.New("turn: username is not <unix expiry>:<user>")

// parseUsername splits a REST username into its expiry and user.
func parseUsername(username string) (expiry time.Time, user string, err error) {
	ts, user, ok := strings.Cut(username, ":")
	if !ok || user == "" {
		return time.Time{}, "", errUsername
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || unix <= 0 {
		return time.Time{}, "", errUsername
	}
	return time.Unix(unix, 0), user, nil
}
