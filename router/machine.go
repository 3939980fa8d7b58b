package router

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// Kind is the kind of an Event.
type Kind int

// Event kinds. They are stored in call records (Cause): append new kinds,
// never renumber.
const (
	// Invite decides a new call from the facts the store established.
	Invite Kind = iota + 1
	Accept
	Reject
	Hangup
	// Leave: a connection is gone for good (bye, or not resumed in time).
	Leave
	// Expire: the ring timer fired.
	Expire
)

// Event is something that happened to a call. User and Conn are the
// authenticated sender, as the gateway reported them.
type Event struct {
	Kind Kind
	User string
	Conn string
	// Gateway is the gateway that holds Conn, as it reported (accept).
	Gateway string
	// Bye marks a Leave that the client asked for (no resume grace).
	Bye bool
	// Invite facts, established by claiming busy locks and reading presence.
	CallerBusy   bool
	CalleeOnline bool
	CalleeBusy   bool
	// OtherDevices, for a Leave by a callee device of a ringing call: the
	// callee still has another connection.
	OtherDevices bool
	Now          time.Time
}

// Effect is one delivery for User's connections (deliver.go).
type Effect struct {
	User     string
	Delivery messages.Delivery
	// Gateway, for a delivery to one connection (Delivery.Conn), is where
	// it was last known to be held: the first try goes there.
	Gateway string
}

// Outcome is what Decide concludes: the next record (nil when unchanged),
// the deliveries to send once that record is stored, and the reply to the
// requesting gateway.
type Outcome struct {
	Next    *Call
	Effects []Effect
	Reply   messages.Reply
	// Repeat marks an event the stored record already reflects (a retried
	// accept by the winning connection, or the very event that ended the
	// call): Effects are those its first decision published, to publish
	// again, since the router that stored the record may have died before
	// publishing. Next is nil.
	Repeat bool
}

// Decide is the call state machine: a pure function of the current record
// (nil when there is none) and an event. It never performs I/O; the router
// stores Next with compare-and-set and publishes Effects only if that
// succeeds, or when the outcome is a Repeat.
func Decide(c *Call, ev Event) Outcome {
	if out, ok := repeat(c, ev); ok {
		return out
	}
	switch ev.Kind {
	case Invite:
		return decideInvite(c, ev)
	case Leave:
		return decideLeave(c, ev)
	case Expire:
		return decideExpire(c, ev)
	}
	if c == nil {
		return refuse(messages.CodeNotFound, "no such call")
	}
	role := roleOf(c, ev.User)
	if role == stranger {
		return refuse(messages.CodeForbidden, "not a party to this call")
	}
	switch ev.Kind {
	case Accept:
		return decideAccept(c, ev, role)
	case Reject:
		return decideReject(c, ev, role)
	case Hangup:
		return decideHangup(c, ev, role)
	}
	return refuse(messages.CodeInternal, "unknown event")
}

type role int

const (
	stranger role = iota
	caller
	callee
)

func roleOf(c *Call, user string) role {
	switch user {
	case c.Caller:
		return caller
	case c.Callee:
		return callee
	}
	return stranger
}

func refuse(code, message string) Outcome {
	return Outcome{Reply: messages.Reply{Code: code, Message: message}}
}

func ack(c *Call, then ...*messages.Envelope) messages.Reply {
	return messages.Reply{Call: c.ID, Then: then}
}

func decideInvite(c *Call, ev Event) Outcome {
	if c == nil {
		return refuse(messages.CodeInternal, "invite without a call record")
	}
	if c.Caller == c.Callee {
		return refuse(messages.CodeBadRequest, "cannot invite yourself")
	}
	switch {
	case c.State == Accepted:
		// A retry whose first attempt went through and was answered: the
		// caller already has (or will get) accepted; ring nobody again.
		return Outcome{Reply: ack(c)}
	case c.State == Ended && c.Refused != "":
		return refuse(c.Refused, "you are already in a call")
	case c.State == Ended:
		return Outcome{Reply: ack(c, messages.Ended(c.ID, c.Reason))}
	case ev.CallerBusy:
		next := end(c, "")
		next.Refused = messages.CodeInvalidState
		return Outcome{Next: next, Reply: refuse(messages.CodeInvalidState, "you are already in a call").Reply}
	case !ev.CalleeOnline:
		return Outcome{Next: end(c, messages.ReasonOffline), Reply: ack(c, messages.Ended(c.ID, messages.ReasonOffline))}
	case ev.CalleeBusy:
		return Outcome{Next: end(c, messages.ReasonBusy), Reply: ack(c, messages.Ended(c.ID, messages.ReasonBusy))}
	}
	return Outcome{
		Effects: []Effect{toDevices(c, "", &messages.Envelope{Type: messages.TypeIncoming, Call: c.ID, From: c.Caller, Data: c.Data})},
		Reply:   ack(c, &messages.Envelope{Type: messages.TypeRinging, Call: c.ID, To: c.Callee}),
	}
}

func decideAccept(c *Call, ev Event, r role) Outcome {
	if r != callee {
		return refuse(messages.CodeForbidden, "only the callee can accept")
	}
	switch c.State {
	case Accepted:
		if c.CalleeConn == ev.Conn { // a retried accept
			out := accepted(c, ev.Conn)
			out.Repeat = true
			return out
		}
		return refuse(messages.CodeInvalidState, "the call was answered elsewhere")
	case Ended:
		return refuse(messages.CodeInvalidState, "the call has ended")
	}
	out := accepted(c, ev.Conn)
	next := *c
	next.State, next.CalleeConn, next.CalleeGateway = Accepted, ev.Conn, ev.Gateway
	out.Next = &next
	return out
}

// accepted is callee device conn answering c: the caller and conn are
// bound to each other, the other devices stop ringing. Next is left to the
// caller.
func accepted(c *Call, conn string) Outcome {
	env := &messages.Envelope{Type: messages.TypeAccepted, Call: c.ID, From: c.Callee}
	reply := ack(c, env)
	reply.Bind = &messages.Binding{Call: c.ID, PeerUser: c.Caller, PeerConn: c.CallerConn}
	return Outcome{
		Effects: []Effect{
			{User: c.Caller, Gateway: c.CallerGateway, Delivery: messages.Delivery{
				Conn: c.CallerConn, Env: *env,
				Bind: &messages.Binding{Call: c.ID, PeerUser: c.Callee, PeerConn: conn},
			}},
			toDevices(c, conn, messages.Ended(c.ID, messages.ReasonAnsweredElsewhere)),
		},
		Reply: reply,
	}
}

func decideReject(c *Call, ev Event, r role) Outcome {
	if r != callee {
		return refuse(messages.CodeForbidden, "only the callee can reject; the caller hangs up")
	}
	switch c.State {
	case Ended:
		return Outcome{Reply: ack(c)}
	case Accepted:
		return refuse(messages.CodeInvalidState, "the call was already answered; hang up instead")
	}
	return rejected(c, ev)
}

// rejected ends a ringing call declined by ev's callee device.
func rejected(c *Call, ev Event) Outcome {
	conn := ev.Conn
	return Outcome{
		Next: endBy(c, ev, messages.ReasonRejected),
		Effects: []Effect{
			toCaller(c, messages.ReasonRejected),
			toDevices(c, conn, messages.Ended(c.ID, messages.ReasonRejected)),
		},
		Reply: ack(c),
	}
}

func decideHangup(c *Call, ev Event, r role) Outcome {
	if c.State == Ended {
		return Outcome{Reply: ack(c)} // a second hangup is harmless
	}
	switch {
	case r == caller && ev.Conn != c.CallerConn:
		return refuse(messages.CodeForbidden, "this connection is not in the call")
	case r == caller && c.State == Ringing:
		return Outcome{
			Next:    endBy(c, ev, messages.ReasonCancelled),
			Effects: []Effect{toDevices(c, "", messages.Ended(c.ID, messages.ReasonCancelled))},
			Reply:   ack(c),
		}
	case r == caller:
		return Outcome{
			Next:    endBy(c, ev, messages.ReasonHangup),
			Effects: []Effect{toCallee(c, messages.ReasonHangup)},
			Reply:   ack(c),
		}
	case c.State == Ringing: // a ringing callee device hanging up declines
		return rejected(c, ev)
	case ev.Conn != c.CalleeConn:
		return refuse(messages.CodeForbidden, "this connection is not in the call")
	}
	return Outcome{
		Next:    endBy(c, ev, messages.ReasonHangup),
		Effects: []Effect{toCaller(c, messages.ReasonHangup)},
		Reply:   ack(c),
	}
}

func decideLeave(c *Call, ev Event) Outcome {
	if !c.live() {
		return Outcome{}
	}
	reason := messages.ReasonDisconnected
	switch {
	case ev.User == c.Caller && ev.Conn == c.CallerConn:
		if c.State == Ringing {
			if ev.Bye {
				reason = messages.ReasonCancelled
			}
			return Outcome{Next: endBy(c, ev, reason), Effects: []Effect{toDevices(c, "", messages.Ended(c.ID, reason))}}
		}
		if ev.Bye {
			reason = messages.ReasonHangup
		}
		return Outcome{Next: endBy(c, ev, reason), Effects: []Effect{toCallee(c, reason)}}
	case ev.User == c.Callee && c.State == Ringing:
		if ev.OtherDevices {
			return Outcome{} // the other devices keep ringing
		}
		return Outcome{Next: endBy(c, ev, messages.ReasonDisconnected), Effects: []Effect{toCaller(c, messages.ReasonDisconnected)}}
	case ev.User == c.Callee && ev.Conn == c.CalleeConn:
		if ev.Bye {
			reason = messages.ReasonHangup
		}
		return Outcome{Next: endBy(c, ev, reason), Effects: []Effect{toCaller(c, reason)}}
	}
	return Outcome{}
}

func decideExpire(c *Call, ev Event) Outcome {
	if c == nil || c.State != Ringing || ev.Now.Before(c.ringDeadline()) {
		return Outcome{}
	}
	return Outcome{
		Next: endBy(c, ev, messages.ReasonNoAnswer),
		Effects: []Effect{
			toCaller(c, messages.ReasonNoAnswer),
			toDevices(c, "", messages.Ended(c.ID, messages.ReasonNoAnswer)),
		},
	}
}

// end returns c ended with reason.
func end(c *Call, reason string) *Call {
	next := *c
	next.State, next.Reason = Ended, reason
	return &next
}

// endBy returns c ended with reason by ev, which it records.
func endBy(c *Call, ev Event, reason string) *Call {
	next := end(c, reason)
	cause := causeOf(ev)
	next.EndedBy = &cause
	return next
}

func toCaller(c *Call, reason string) Effect {
	return Effect{User: c.Caller, Gateway: c.CallerGateway, Delivery: messages.Delivery{Conn: c.CallerConn, Env: *messages.Ended(c.ID, reason)}}
}

// toCallee tells the accepting callee device.
func toCallee(c *Call, reason string) Effect {
	return Effect{User: c.Callee, Gateway: c.CalleeGateway, Delivery: messages.Delivery{Conn: c.CalleeConn, Env: *messages.Ended(c.ID, reason)}}
}

// toDevices sends env to every callee device but except.
func toDevices(c *Call, except string, env *messages.Envelope) Effect {
	return Effect{User: c.Callee, Delivery: messages.Delivery{Except: except, Env: *env}}
}
