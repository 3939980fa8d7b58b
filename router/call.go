package router

import (
	"encoding/json"
	"time"
)

// State is the state of a call record.
type State string

// Call states. A call is created ringing; it moves to accepted once, and to
// ended once; ended is final.
const (
	Ringing  State = "ringing"
	Accepted State = "accepted"
	Ended    State = "ended"
)

// Call is the record of one call, stored under messages.CallKey(ID).
type Call struct {
	ID         string `json:"id"`
	Caller     string `json:"caller"`
	CallerConn string `json:"caller_conn"`
	Callee     string `json:"callee"`
	// CalleeConn is the callee device that accepted; empty while ringing.
	CalleeConn string `json:"callee_conn,omitempty"`
	// CallerGateway and CalleeGateway are the gateways that held
	// CallerConn and CalleeConn when they asked (invite, accept): a
	// delivery to one of them is posted there first, with no presence
	// read; a receipt that says it is not there any more (it resumed
	// elsewhere) sends the delivery through presence (deliver.go).
	CallerGateway string `json:"caller_gw,omitempty"`
	CalleeGateway string `json:"callee_gw,omitempty"`
	State         State  `json:"state"`
	// Reason is why the call ended, as the caller was told.
	Reason string `json:"reason,omitempty"`
	// Refused is set when the invite itself was refused with an error code
	// (the caller was busy); a retried invite gets the same answer.
	Refused string `json:"refused,omitempty"`
	// Room, for a room ring (PROTOCOL.md §14.5), is the room the callee is
	// rung into: accepting joins it, and every message about the ring
	// names it.
	Room string `json:"room,omitempty"`
	// Data is the invite's data, sent again to devices that connect while
	// the call rings.
	Data json.RawMessage `json:"data,omitempty"`
	// RingDeadline is when a ringing call ends with no_answer (Unix ms).
	RingDeadline int64 `json:"ring_deadline_ms"`
	// StartedMS, AnsweredMS and EndedMS are when the call was placed,
	// accepted and ended (Unix ms; 0 until then), for its events.
	StartedMS  int64 `json:"started_ms,omitempty"`
	AnsweredMS int64 `json:"answered_ms,omitempty"`
	EndedMS    int64 `json:"ended_ms,omitempty"`
	// EndedBy is the event that ended the call; nil while it is live, for
	// an invite that ended at once, and in records written before it
	// existed. A repeat of that event publishes the ending's effects again
	// (Decide, repeat.go).
	EndedBy *Cause `json:"ended_by,omitempty"`
}

// Cause is the event that ended a call, as much of it as deciding it again
// needs. It is stored in the call record.
type Cause struct {
	Kind Kind   `json:"kind"`
	User string `json:"user,omitempty"`
	Conn string `json:"conn,omitempty"`
	Bye  bool   `json:"bye,omitempty"`
}

// ringDeadline returns RingDeadline as a time.
func (c *Call) ringDeadline() time.Time { return time.UnixMilli(c.RingDeadline) }

// live reports whether the call still holds its parties busy.
func (c *Call) live() bool { return c != nil && c.State != Ended }
