package messages

import (
	"maps"
	"slices"
)

// Client → server message types.
const (
	TypeInvite  = "invite"
	TypeAccept  = "accept"
	TypeReject  = "reject"
	TypeHangup  = "hangup"
	TypeSignal  = "signal"
	TypeRefresh = "refresh"
	TypePing    = "ping"
	TypeBye     = "bye"
	// Room requests (PROTOCOL.md §14). invite, signal, accept, reject and
	// hangup take room forms too.
	TypeJoin   = "join"
	TypeLeave  = "leave"
	TypeKick   = "kick"
	TypeLock   = "lock"
	TypeUnlock = "unlock"
)

// Server → client message types.
const (
	TypeWelcome  = "welcome"
	TypeAck      = "ack"
	TypeError    = "error"
	TypeRinging  = "ringing"
	TypeIncoming = "incoming"
	TypeAccepted = "accepted"
	TypeEnded    = "ended"
	TypePong     = "pong"
	TypeGoaway   = "goaway"
	// TypeExpiring warns that the session's token expires soon: refresh it
	// before data.expires_in_ms or the connection is closed with 4002.
	TypeExpiring = "expiring"
	// Room events (PROTOCOL.md §14).
	TypeJoined       = "joined"
	TypeMemberJoined = "member_joined"
	TypeMemberLeft   = "member_left"
	TypeLocked       = "locked"
	TypeUnlocked     = "unlocked"
)

// Reasons carried by an ended message.
const (
	ReasonHangup            = "hangup"
	ReasonCancelled         = "cancelled"
	ReasonRejected          = "rejected"
	ReasonBusy              = "busy"
	ReasonOffline           = "offline"
	ReasonNoAnswer          = "no_answer"
	ReasonAnsweredElsewhere = "answered_elsewhere"
	ReasonDisconnected      = "disconnected"
	ReasonError             = "error"
	// ReasonMoved: a 1:1 call moved into a room (ended carries the room).
	ReasonMoved = "moved"
	// ReasonJoinFailed: a room ring was answered but the room no longer
	// admitted the device (full, locked or ended).
	ReasonJoinFailed = "join_failed"
)

// Reasons carried by a member_left message.
const (
	LeftLeft         = "left"
	LeftDisconnected = "disconnected"
	LeftKicked       = "kicked"
)

// Error codes carried by an error message.
const (
	CodeBadRequest   = "bad_request"
	CodeUnknownType  = "unknown_type"
	CodeTooLarge     = "too_large"
	CodeRateLimited  = "rate_limited"
	CodeNotFound     = "not_found"
	CodeForbidden    = "forbidden"
	CodeInvalidState = "invalid_state"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
	// CodeRoomFull: the room has its maximum of members.
	CodeRoomFull = "room_full"
	// CodeRoomLocked: the room admits no new members.
	CodeRoomLocked = "room_locked"
	// CodeUnauthorized is used only in the HTTP 401 body before the upgrade.
	CodeUnauthorized = "unauthorized"
)

// WebSocket close codes used by callmesh.
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001
	ClosePolicy       = 1008
	CloseTooBig       = 1009
	CloseInternal     = 1011
	CloseRestart      = 1012
	CloseTakenOver    = 4001
	CloseTokenExpired = 4002
	CloseTooSlow      = 4003
	CloseTooManyConns = 4004
)

// clientTypes are the types a client may send.
var clientTypes = map[string]bool{
	TypeInvite: true, TypeAccept: true, TypeReject: true, TypeHangup: true,
	TypeSignal: true, TypeRefresh: true, TypePing: true, TypeBye: true,
	TypeJoin: true, TypeLeave: true, TypeKick: true, TypeLock: true, TypeUnlock: true,
}

// ClientTypes returns the types a client may send, sorted.
func ClientTypes() []string {
	return slices.Sorted(maps.Keys(clientTypes))
}
