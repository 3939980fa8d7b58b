package router

// A router stores a transition, then publishes its effects. If it dies in
// between, the record is right but nobody was told. Every such event is
// repeated by someone: a gateway retries its request on another router after
// a timeout, every router fires every ring timer, and every router's monitor
// evicts a dead gateway's connections. So Decide answers a repeat of the
// event that ended a call (and a retried accept by the winning device) with
// the effects of the first decision again, without writing. Effects are
// therefore delivered at least once across router crashes: a gateway may
// get a duplicate ended or accepted for a connection, and dropping it is the
// gateway's job.
//
// A ring timeout fires on every router, so every router but the one whose
// write won re-publishes ended{no_answer}: with N routers, N-1 duplicates per
// unanswered call. They cannot be told apart from the repeat that recovers a
// dead router's expiry, which happens at the same moment.

// repeat reports whether ev is the event that ended c (EndedBy) once more,
// and if so decides it again on c as it was before it ended: the same
// effects and reply, no Next.
func repeat(c *Call, ev Event) (Outcome, bool) {
	if c == nil || c.State != Ended || c.EndedBy == nil {
		return Outcome{}, false
	}
	cause := c.EndedBy
	if causeOf(ev) != *cause {
		return Outcome{}, false
	}
	prior := *c
	prior.State, prior.Reason, prior.EndedBy = Ringing, "", nil
	if prior.CalleeConn != "" { // only an accept sets it
		prior.State = Accepted
	}
	again := Event{Kind: cause.Kind, User: cause.User, Conn: cause.Conn, Bye: cause.Bye, Now: prior.ringDeadline()}
	out := Decide(&prior, again)
	if out.Next == nil || out.Next.State != Ended || out.Next.Reason != c.Reason {
		return Outcome{}, false // a record this event did not end (edited by hand?)
	}
	out.Next, out.Repeat = nil, true
	return out, true
}

// causeOf is what identifies ev as the event that ended a call: a ring
// timeout is one event whoever fires it; a request is its kind, sender and,
// for a leave, whether it was a bye.
func causeOf(ev Event) Cause {
	switch ev.Kind {
	case Expire:
		return Cause{Kind: Expire}
	case Leave:
		return Cause{Kind: Leave, User: ev.User, Conn: ev.Conn, Bye: ev.Bye}
	}
	return Cause{Kind: ev.Kind, User: ev.User, Conn: ev.Conn}
}
