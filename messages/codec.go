package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits bound what Decode accepts.
const (
	// MaxIDLen is the longest client correlation id.
	MaxIDLen = 64
	// MaxUserIDLen is the longest user id in bytes.
	MaxUserIDLen = 256
	// MaxCallIDLen is the longest call id.
	MaxCallIDLen = 64
	// DefaultMaxData is the default bound on the size of data in bytes.
	DefaultMaxData = 32 << 10
)

// DecodeError is a frame refused by Decode. It carries the wire error code
// and the client's correlation id when one could be read.
type DecodeError struct {
	ID      string
	Code    string
	Message string
}

func (e *DecodeError) Error() string { return "messages: " + e.Code + ": " + e.Message }

func refuse(id, code, format string, args ...any) *DecodeError {
	return &DecodeError{ID: id, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Decode parses and validates one client frame. maxData bounds the size of
// the data field (DefaultMaxData when ≤ 0). A refused frame yields a
// *DecodeError. Server-only fields (from, reason, code, message) are cleared:
// a client cannot set them. The envelope's Data may share frame's memory:
// frame must not change while the envelope is in use.
func Decode(frame []byte, maxData int) (*Envelope, error) {
	if maxData <= 0 {
		maxData = DefaultMaxData
	}
	if !utf8.Valid(frame) {
		// encoding/json would turn invalid bytes into U+FFFD, changing a
		// user id, and would pass them through inside data.
		return nil, refuse("", CodeBadRequest, "frame is not valid UTF-8")
	}
	var e Envelope
	if !scanEnvelope(frame, &e) { // the fast path of the usual frame (scan.go)
		e = Envelope{}
		if err := json.Unmarshal(frame, &e); err != nil {
			return nil, refuse("", CodeBadRequest, "frame is not a JSON object: %v", err)
		}
	}
	if len(e.ID) > MaxIDLen || !utf8.ValidString(e.ID) {
		return nil, refuse("", CodeBadRequest, "id must be valid UTF-8 of at most %d bytes", MaxIDLen)
	}
	e.From, e.Reason, e.Code, e.Message = "", "", "", ""
	e.FromConn, e.Member, e.Members = "", nil, nil
	if e.Type == "" {
		return nil, refuse(e.ID, CodeBadRequest, "type is required")
	}
	if !clientTypes[e.Type] {
		return nil, refuse(e.ID, CodeUnknownType, "unknown message type %.64q", e.Type)
	}
	if len(e.Data) > maxData {
		return nil, refuse(e.ID, CodeTooLarge, "data is %d bytes, the limit is %d", len(e.Data), maxData)
	}
	if bytes.Equal(e.Data, []byte("null")) {
		e.Data = nil
	}
	if e.Room != "" {
		if err := ValidRoomID(e.Room); err != nil {
			return nil, refuse(e.ID, CodeBadRequest, "room: %v", err)
		}
	}
	switch e.Type {
	case TypeInvite:
		if err := ValidUserID(e.To); err != nil {
			return nil, refuse(e.ID, CodeBadRequest, "to: %v", err)
		}
		if e.Call != "" && (e.Room == "" || !ValidCallID(e.Call)) {
			return nil, refuse(e.ID, CodeBadRequest, "an invite's call (moving a call into a room) must be a call id, with room")
		}
	case TypeAccept, TypeReject, TypeHangup:
		if !ValidCallID(e.Call) {
			return nil, refuse(e.ID, CodeBadRequest, "call must be a call id")
		}
	case TypeSignal:
		switch {
		case e.Room == "" && !ValidCallID(e.Call):
			return nil, refuse(e.ID, CodeBadRequest, "call must be a call id")
		case e.Room != "" && e.Call != "":
			return nil, refuse(e.ID, CodeBadRequest, "signal has call or room, not both")
		case e.Room != "" && !ValidCallID(e.ToConn):
			return nil, refuse(e.ID, CodeBadRequest, "a room signal needs to_conn, a connection id")
		}
		if len(e.Data) == 0 {
			return nil, refuse(e.ID, CodeBadRequest, "signal needs data")
		}
	case TypeJoin, TypeLeave, TypeLock, TypeUnlock:
		if e.Room == "" {
			return nil, refuse(e.ID, CodeBadRequest, "%s needs room", e.Type)
		}
	case TypeKick:
		if e.Room == "" {
			return nil, refuse(e.ID, CodeBadRequest, "kick needs room")
		}
		if !ValidCallID(e.Conn) {
			return nil, refuse(e.ID, CodeBadRequest, "kick needs conn, a connection id")
		}
	case TypeRefresh:
		var r RefreshData
		if err := json.Unmarshal(e.Data, &r); err != nil || r.Token == "" {
			return nil, refuse(e.ID, CodeBadRequest, `refresh needs data {"token": JWT}`)
		}
	}
	return &e, nil
}

// ValidUserID reports why id is not a legal user id: 1–256 bytes of UTF-8
// without U+FFFD. JSON decoding (of a frame or of a token's claims) turns a
// lone surrogate escape or bytes that are not UTF-8 into U+FFFD, so that
// "\ud800x" and "\udc00x" would both name the user "\ufffdx": after decoding,
// U+FFFD is the only trace of such a lossy conversion, and no user id may
// hold it.
func ValidUserID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("user id is empty")
	case len(id) > MaxUserIDLen:
		return fmt.Errorf("user id is %d bytes, the limit is %d", len(id), MaxUserIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("user id is not valid UTF-8")
	case strings.ContainsRune(id, utf8.RuneError):
		return fmt.Errorf("user id contains U+FFFD, which stands for text that was not valid UTF-8 or UTF-16 (a lone surrogate)")
	}
	return nil
}

// ValidRoomID reports why id is not a legal room id. Room ids follow the
// rule of user ids (ValidUserID) and are encoded the same way in subjects
// and keys (RoomKey).
func ValidRoomID(id string) error {
	if err := ValidUserID(id); err != nil {
		return fmt.Errorf("room id%s", strings.TrimPrefix(err.Error(), "user id"))
	}
	return nil
}

// ValidCallID reports whether id has the shape of a call id: 1–64 characters
// of the base64url alphabet. Anything else cannot name a call and must never
// reach a KV key.
func ValidCallID(id string) bool {
	if id == "" || len(id) > MaxCallIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
