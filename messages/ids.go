package messages

import (
	"crypto/rand"
	"encoding/base64"
)

// NewID returns an unguessable 128-bit identifier in base64url (22 characters).
// Call ids, connection ids, gateway ids and resume tokens are made with it.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
