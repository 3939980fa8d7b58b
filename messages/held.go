package messages

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// heldTypes are the frames a gateway may hold for a session while no socket
// serves it: what a server sends in the middle of a session (not welcome,
// which each socket gets from its own gateway, nor goaway, which was the
// old gateway's).
var heldTypes = map[string]bool{
	TypeAck: true, TypeError: true, TypePong: true, TypeRinging: true, TypeIncoming: true,
	TypeAccepted: true, TypeEnded: true, TypeSignal: true, TypeExpiring: true,
	TypeJoined: true, TypeMemberJoined: true, TypeMemberLeft: true, TypeLocked: true, TypeUnlocked: true,
}

// maxHeldMembers bounds the members of a held joined frame.
const maxHeldMembers = 256

// maxHeldText bounds the free-text fields (code, reason, message) of a
// held frame.
const maxHeldText = 1024

// DecodeHeld parses and validates a frame that another gateway handed over
// with a session (HandoverReply): that gateway may be compromised, so its
// frames reach the client only if they are UTF-8 JSON envelopes of a type
// a server sends mid-session, with ids of the right shape and data within
// maxData (DefaultMaxData when ≤ 0). The caller sends Encode of the result,
// never the frame as it came.
func DecodeHeld(frame []byte, maxData int) (*Envelope, error) {
	if maxData <= 0 {
		maxData = DefaultMaxData
	}
	if !utf8.Valid(frame) {
		return nil, fmt.Errorf("messages: held frame is not valid UTF-8")
	}
	var e Envelope
	if err := json.Unmarshal(frame, &e); err != nil {
		return nil, fmt.Errorf("messages: held frame: %w", err)
	}
	switch {
	case !heldTypes[e.Type]:
		return nil, fmt.Errorf("messages: held frame of type %.64q", e.Type)
	case len(e.ID) > MaxIDLen:
		return nil, fmt.Errorf("messages: held frame: id longer than %d bytes", MaxIDLen)
	case e.Call != "" && !ValidCallID(e.Call):
		return nil, fmt.Errorf("messages: held frame: call is not a call id")
	case e.Room != "" && ValidRoomID(e.Room) != nil:
		return nil, fmt.Errorf("messages: held frame: room is not a room id")
	case e.Type == TypeSignal && e.Room != "" && (e.Call != "" || !ValidCallID(e.FromConn)):
		return nil, fmt.Errorf("messages: held room signal without from_conn, or with a call")
	case (e.Type == TypeSignal && e.Room == "" || e.Type == TypeIncoming || e.Type == TypeAccepted || e.Type == TypeEnded) && e.Call == "":
		return nil, fmt.Errorf("messages: held %s frame without a call", e.Type)
	case roomEvent(e.Type) && e.Room == "":
		return nil, fmt.Errorf("messages: held %s frame without a room", e.Type)
	case len(e.Members) > maxHeldMembers || !validMembers(e.Members) || e.Member != nil && !validMembers([]RoomMember{*e.Member}):
		return nil, fmt.Errorf("messages: held frame: malformed members")
	case e.From != "" && ValidUserID(e.From) != nil, e.To != "" && ValidUserID(e.To) != nil:
		return nil, fmt.Errorf("messages: held frame: from or to is not a user id")
	case len(e.Code) > maxHeldText || len(e.Reason) > maxHeldText || len(e.Message) > maxHeldText:
		return nil, fmt.Errorf("messages: held frame: text longer than %d bytes", maxHeldText)
	case len(e.Data) > maxData:
		return nil, fmt.Errorf("messages: held frame: data is %d bytes, the limit is %d", len(e.Data), maxData)
	}
	return &e, nil
}

// roomEvent reports whether typ is a room event (PROTOCOL.md §14.4).
func roomEvent(typ string) bool {
	switch typ {
	case TypeJoined, TypeMemberJoined, TypeMemberLeft, TypeLocked, TypeUnlocked:
		return true
	}
	return false
}

// validMembers reports whether every member has a user id and a
// connection id.
func validMembers(ms []RoomMember) bool {
	for _, m := range ms {
		if ValidUserID(m.User) != nil || !ValidCallID(m.Conn) {
			return false
		}
	}
	return true
}
