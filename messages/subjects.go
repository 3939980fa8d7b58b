package messages

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// DefaultPrefix is the subject prefix and bucket-name stem used unless
// configured otherwise.
const DefaultPrefix = "callmesh"

// Names builds every NATS subject and JetStream name callmesh uses, under one
// prefix so several installations can share a cluster. User ids never appear
// raw: they are base64url-encoded (no padding), so '.', '*', '>', spaces or
// any other byte cannot change a subject's or key's meaning.
type Names struct {
	prefix string
}

// NewNames returns the builders for prefix, which must be a single subject
// token of letters, digits, '-' or '_' (it also names KV buckets).
func NewNames(prefix string) (Names, error) {
	if prefix == "" || len(prefix) > 32 || !ValidCallID(prefix) {
		return Names{}, fmt.Errorf("messages: prefix %q must be 1–32 letters, digits, '-' or '_'", prefix)
	}
	return Names{prefix: prefix}, nil
}

// emptyUserToken stands for the empty user id, which base64 would encode as
// an empty token. One character is never valid unpadded base64, so the
// encoding stays one-to-one. (The empty id is refused everywhere; this only
// keeps the builders total.)
const emptyUserToken = "-"

var userEncoding = base64.RawURLEncoding.Strict()

// EncodeUserID encodes a user id as one subject token and KV key segment.
func EncodeUserID(user string) string {
	if user == "" {
		return emptyUserToken
	}
	return userEncoding.EncodeToString([]byte(user))
}

// appendUserID appends EncodeUserID(user) to b.
func appendUserID(b []byte, user string) []byte {
	if user == "" {
		return append(b, emptyUserToken...)
	}
	return userEncoding.AppendEncode(b, []byte(user))
}

// DecodeUserID reverses EncodeUserID; every user id has exactly one token.
func DecodeUserID(token string) (string, error) {
	if token == emptyUserToken {
		return "", nil
	}
	if strings.ContainsAny(token, "\r\n") {
		return "", fmt.Errorf("messages: decode user token: line break in token")
	}
	b, err := userEncoding.DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("messages: decode user token: %w", err)
	}
	return string(b), nil
}

// Prefix returns the configured prefix.
func (n Names) Prefix() string { return n.prefix }

// UserSubject is where deliveries for every connection of user are published.
func (n Names) UserSubject(user string) string {
	var buf [128]byte // one allocation, the result, for the usual user id (it is per signal)
	b := append(append(buf[:0], n.prefix...), ".user."...)
	return string(appendUserID(b, user))
}

// RouterSubject is where gateways send requests to the router queue group.
func (n Names) RouterSubject() string { return n.prefix + ".router" }

// A gateway's id is "<name>.<instance>": the name its NATS login is
// entitled to (gateway.name; NATS permissions are per name, see
// deploy/nats-auth.conf) and a random instance, new for every process, so a
// restarted gateway never inherits what presence still lists for its
// predecessor. Every subject private to one gateway lies under
// GatewayRoot(id), so one NATS permission, <prefix>.gw.<name>.>, lets a
// gateway subscribe to its own and to nothing of another's.

// NewGatewayID returns a fresh id for a gateway of that name (ValidGatewayName).
func NewGatewayID(name string) string { return name + "." + NewID() }

// ValidGatewayName reports whether name may name gateways: 1–64 letters,
// digits, '-' or '_' (one subject token).
func ValidGatewayName(name string) error {
	if name == "" || len(name) > 64 || !ValidCallID(name) {
		return fmt.Errorf("messages: gateway name %q must be 1–64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// GatewayRoot is the subject tree private to gateway id.
func (n Names) GatewayRoot(gateway string) string { return n.prefix + ".gw." + gateway }

// GatewaySubject is where gateway id answers handover requests: another
// gateway resuming one of its sessions asks it for what it held meanwhile.
func (n Names) GatewaySubject(gateway string) string { return n.GatewayRoot(gateway) + ".handover" }

// DeliverSubject is where routers post their deliveries for the
// connections gateway holds. The gateway subscribes once, at its start,
// before presence can name it as any connection's holder.
func (n Names) DeliverSubject(gateway string) string { return n.GatewayRoot(gateway) + ".deliver" }

// GatewayInbox is the inbox prefix of gateway's NATS connection
// (nats.CustomInboxPrefix): replies to it, from routers, other gateways and
// JetStream, reach no other gateway.
func (n Names) GatewayInbox(gateway string) string { return n.GatewayRoot(gateway) + ".inbox" }

// RouterQueue is the queue group of the routers.
func (n Names) RouterQueue() string { return n.prefix + "-routers" }

// EventsStream is the JetStream stream of call and room events.
func (n Names) EventsStream() string { return n.prefix + "_events" }

// EventsSubjects are the subjects of EventsStream.
func (n Names) EventsSubjects() string { return n.prefix + ".events.>" }

// EventSubject is where an event about call id, or about a room (room
// set; encoded as user ids are), is published.
func (n Names) EventSubject(call, room string) string {
	if room != "" && call == "" {
		return n.prefix + ".events.room." + EncodeUserID(room)
	}
	return n.prefix + ".events.call." + call
}

// CallsBucket is the JetStream KV bucket holding calls and busy locks.
func (n Names) CallsBucket() string { return n.prefix + "_calls" }

// PresenceBucket is the JetStream KV bucket holding gateways and connections.
func (n Names) PresenceBucket() string { return n.prefix + "_presence" }

// CallKey is the key of a call record in the calls bucket. id must satisfy
// ValidCallID.
func CallKey(id string) string { return "call." + id }

// BusyKey is the key of user's busy lock in the calls bucket.
func BusyKey(user string) string { return "busy." + EncodeUserID(user) }

// SeatKey is the key of user's room lock when rooms.exclusive is off: it
// holds the RoomKey of the user's room, as a busy lock does otherwise.
func SeatKey(user string) string { return "seat." + EncodeUserID(user) }

// GatewayKey is the key of a gateway's heartbeat in the presence bucket.
func GatewayKey(gateway string) string { return "gw." + gateway }

// UserKey is the key of user's connection set in the presence bucket.
func UserKey(user string) string { return "user." + EncodeUserID(user) }

// RoomKey is the key of a room's record in the calls bucket. The room id is
// encoded as user ids are, so no room id can name another key. A busy lock
// held by a room holds this key.
func RoomKey(room string) string { return "room." + EncodeUserID(room) }
