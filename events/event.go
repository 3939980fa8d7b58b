// Package events is callmesh's feed of call and room lifecycle events: the
// routers append them to a JetStream stream (the record of calls for call
// history, billing and missed-call notifications), `callmesh events` tails
// it, and `callmesh webhook` POSTs each to an HTTP endpoint, signed.
// docs/events.md is the schema.
package events

import "time"

// Event types.
const (
	// CallRinging: a call rings the callee's devices.
	CallRinging = "call.ringing"
	// CallAnswered: a callee device accepted.
	CallAnswered = "call.answered"
	// CallEnded: a call ended, rung or not, with its reason and durations.
	CallEnded = "call.ended"
	// RoomCreated: the first join (or a call moved in) made a room.
	RoomCreated = "room.created"
	// RoomJoined: a member connection joined a room.
	RoomJoined = "room.joined"
	// RoomLeft: a member connection left a room (reason left,
	// disconnected or kicked).
	RoomLeft = "room.left"
	// RoomEnded: an empty room's empty timeout passed (or it emptied with
	// none).
	RoomEnded = "room.ended"
)

// Event is one lifecycle event, as JSON on the stream and in a webhook's
// body. Fields that do not apply to a type are left out.
type Event struct {
	// ID is unique per event and the same for every router that publishes
	// it again (the stream drops such repeats within its duplicate window).
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`

	Call   string `json:"call,omitempty"`
	Caller string `json:"caller,omitempty"`
	Callee string `json:"callee,omitempty"`
	// Room is the room of a room event, or of a call that rang someone
	// into a room (or moved into one).
	Room string `json:"room,omitempty"`
	// User and Conn are the member of a room.joined or room.left.
	User string `json:"user,omitempty"`
	Conn string `json:"conn,omitempty"`
	// Reason is why a call ended (PROTOCOL.md §8, plus "refused" when the
	// caller was busy) or why a member left.
	Reason string `json:"reason,omitempty"`
	// Started is when the call was placed; Answered when it was accepted
	// (call.answered, call.ended).
	Started  *time.Time `json:"started,omitempty"`
	Answered *time.Time `json:"answered,omitempty"`
	// RingMS is how long the call rang (until answered or ended); TalkMS
	// how long it lasted once answered (call.ended).
	RingMS *int64 `json:"ring_ms,omitempty"`
	TalkMS *int64 `json:"talk_ms,omitempty"`
}
