package messages

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"sync/atomic"
)

// A resume token is "<conn id>.<secret>". The connection id says which
// session to resume; presence keeps only the secret's hash, so reading the
// presence bucket does not let anyone resume a session.

// NewResumeToken returns a fresh token for conn and the hash presence keeps.
func NewResumeToken(conn string) (token, hash string) {
	secret := NewID()
	return conn + "." + secret, HashResumeSecret(secret)
}

// ParseResumeToken splits a token into the connection id and the secret.
func ParseResumeToken(token string) (conn, secret string, ok bool) {
	conn, secret, ok = strings.Cut(token, ".")
	if !ok || !ValidCallID(conn) || !ValidCallID(secret) {
		return "", "", false
	}
	return conn, secret, true
}

// HashResumeSecret is what presence stores for a resume secret.
func HashResumeSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// SameHash compares two resume hashes in constant time.
func SameHash(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Handover asks the gateway that held a session for what it kept while the
// client was away, and to let the session go (published on GatewaySubject).
type Handover struct {
	User string `json:"user"`
	Conn string `json:"conn"`
}

// HandoverReply answers a Handover. Frames are the client frames the old
// gateway held, in order, with their delivery IDs ("" for frames that were
// not deliveries, such as acks); Lost reports that its buffer overflowed.
type HandoverReply struct {
	Found  bool        `json:"found"`
	Lost   bool        `json:"lost,omitempty"`
	Frames []HeldFrame `json:"frames,omitempty"`
}

// HeldFrame is one client frame kept for a session that was away.
type HeldFrame struct {
	ID    string `json:"n,omitempty"`
	Frame []byte `json:"f"` // base64 in JSON: kept byte for byte
}

// deliveryPrefix makes delivery IDs unique across processes; the counter
// makes them unique within one.
var (
	deliveryPrefix = NewID()[:11] + "."
	deliverySeq    atomic.Uint64
)

// NextDeliveryID returns a delivery ID unique across processes.
func NextDeliveryID() string {
	var buf [32]byte // one allocation, the result (it is per signal)
	return string(strconv.AppendUint(append(buf[:0], deliveryPrefix...), deliverySeq.Add(1), 36))
}
