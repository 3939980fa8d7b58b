package gateway

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// callState is where one of a connection's calls stands.
type callState uint8

const (
	callRinging  callState = iota + 1 // invited, not answered yet
	callAccepted                      // answered: signal is relayed
)

// callStateOf reads a state as PROTOCOL.md names it ("ringing",
// "accepted"); an unknown name reads as ringing, which relays nothing.
func callStateOf(name string) callState {
	if name == messages.TypeAccepted {
		return callAccepted
	}
	return callRinging
}

// callRole is which side of a call a connection is on.
type callRole uint8

const (
	roleCaller callRole = iota + 1
	roleCallee
)

// callRoleOf reads a role as PROTOCOL.md names it ("caller", "callee").
func callRoleOf(name string) callRole {
	if name == "callee" {
		return roleCallee
	}
	return roleCaller
}

// callView is what a connection knows of one of its calls: enough to relay
// signal without asking the router. The router stays the authority: it
// creates bindings (accepted) and removes them (ended).
type callView struct {
	role     callRole
	state    callState
	peer     string   // the other party's user id
	peerConn string   // the other party's connection, once accepted
	room     string   // the room a room ring rings into (callee side)
	sent     sentRing // the signals relayed to the peer, for a replay
	// sentSeq numbers the signals relayed (sentAt: the last). From the
	// peer's socket recvSrc, every signal up to recvSeq has been seen, and
	// recvMax is the highest number heard of (replay.go).
	sentSeq uint64
	sentAt  time.Time
	recvSeq uint64
	recvMax uint64
	recvSrc string
}

// accepted reports whether v is an accepted call (nil is none).
func (v *callView) accepted() bool { return v != nil && v.state == callAccepted }

// setCall records call's view. Guarded by mu.
func (c *conn) setCall(call string, v *callView) {
	if c.calls == nil {
		c.calls = make(map[string]*callView, 1)
	}
	c.calls[call] = v
}

// endCall forgets a call that ended for this connection. Guarded by mu.
func (c *conn) endCall(call string) {
	delete(c.calls, call)
	c.ended.add(call)
}
