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
}

// ClientTypes returns the types a client may send, sorted.
func ClientTypes() []string {
	return slices.Sorted(maps.Keys(clientTypes))
}
