package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// pair is two connections on different gateways (when there are several):
// a caller and a callee.
type pair struct {
	idx    int
	caller *conn
	callee *conn
	call   string // the accepted call (relay)
	n      int    // requests made, for correlation ids; owned by the pair's goroutine
}

// openPairs opens the connections of o.Pairs pairs: pair i's caller on
// gateway i, its callee on gateway i+1 (of the URL list, wrapping).
func (r *run) openPairs(ctx context.Context) ([]*pair, error) {
	n := 2 * r.o.Pairs
	r.setProgress(func() string { return "getting tokens" })
	tokens, err := r.tokens(ctx, 0, n)
	if err != nil {
		return nil, err
	}
	conns := make([]*conn, n)
	var (
		done   atomic.Int64
		failMu sync.Mutex
		fail   string
	)
	r.setProgress(func() string { return fmt.Sprintf("connecting: %d/%d", done.Load(), n) })
	parallel(ctx, r.o.Dialers, 0, n, func(i int) bool {
		gw := i/2 + i%2 // pair p: caller on gateway p, callee on p+1
		c, _, reason := r.open(ctx, i, r.dialURL(ctx, i, gw, tokens[i]))
		if c == nil {
			failMu.Lock()
			fail = reason
			failMu.Unlock()
			return false
		}
		conns[i] = c
		done.Add(1)
		return true
	})
	if fail != "" || ctx.Err() != nil {
		r.closeAll(conns)
		if fail == "" {
			return nil, ctx.Err()
		}
		detail, _ := r.lastDialErr.Load().(string)
		return nil, fmt.Errorf("bench: a connection failed (%s; %s); errors: %s", fail, detail, formatErrors(r.errors.take()))
	}
	pairs := make([]*pair, r.o.Pairs)
	for i := range pairs {
		pairs[i] = &pair{idx: i, caller: conns[2*i], callee: conns[2*i+1]}
	}
	return pairs, nil
}

// closePairs closes the pairs' connections.
func (r *run) closePairs(pairs []*pair) {
	conns := make([]*conn, 0, 2*len(pairs))
	for _, p := range pairs {
		conns = append(conns, p.caller, p.callee)
	}
	r.closeAll(conns)
}

// request is a client frame of callmesh.
type request struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Call string `json:"call,omitempty"`
	To   string `json:"to,omitempty"`
}

func (c *conn) request(q request) error {
	b, _ := json.Marshal(q)
	return c.send(b)
}

// callTimes are when a call cycle reached its milestones, as offsets from
// the run's base.
type callTimes struct {
	incoming, accepted time.Duration
}

// setupCall runs invite → incoming → accept → accepted between p's caller
// and callee. It returns the call id and when incoming and accepted came,
// or the reason it failed (empty when the reader has counted it already).
func (r *run) setupCall(p *pair) (call string, t callTimes, fail string) {
	timeout := r.o.Timeout
	p.n++
	inv := fmt.Sprintf("i%d", p.n)
	if err := p.caller.request(request{Type: "invite", ID: inv, To: p.callee.user}); err != nil {
		return "", t, "send"
	}
	ack, reason := p.caller.await(timeout, inv, func(f *frame) bool { return f.Type == "ack" && f.ID == inv })
	if ack == nil {
		return "", t, stage(reason, "invite")
	}
	call = ack.Call
	inc, reason := p.callee.await(timeout, "", func(f *frame) bool { return f.Type == "incoming" && f.Call == call })
	if inc == nil {
		if ended := p.caller.endedFor(call); ended != "" {
			return call, t, "ended:" + ended
		}
		return call, t, stage(reason, "incoming")
	}
	t.incoming = r.since()
	acc := fmt.Sprintf("a%d", p.n)
	if err := p.callee.request(request{Type: "accept", ID: acc, Call: call}); err != nil {
		return call, t, "send"
	}
	accepted, reason := p.caller.await(timeout, "", func(f *frame) bool {
		return f.Type == "accepted" && f.Call == call || f.Type == "ended" && f.Call == call
	})
	if accepted == nil {
		return call, t, stage(reason, "accepted")
	}
	if accepted.Type == "ended" {
		return call, t, "ended:" + accepted.Reason
	}
	t.accepted = r.since()
	return call, t, ""
}

// hangupCall ends p's call from the caller's side and waits for the
// caller's ack and the callee's ended.
func (r *run) hangupCall(p *pair, call string) string {
	hid := fmt.Sprintf("h%d", p.n)
	if err := p.caller.request(request{Type: "hangup", ID: hid, Call: call}); err != nil {
		return "send"
	}
	if f, reason := p.caller.await(r.o.Timeout, hid, func(f *frame) bool { return f.Type == "ack" && f.ID == hid }); f == nil {
		return stage(reason, "hangup")
	}
	if f, reason := p.callee.await(r.o.Timeout, "", func(f *frame) bool { return f.Type == "ended" && f.Call == call }); f == nil {
		return stage(reason, "ended")
	}
	return ""
}

// endedFor looks through c's queued frames for the ended of call (busy,
// offline), and returns its reason.
func (c *conn) endedFor(call string) string {
	for {
		select {
		case f := <-c.ctrl:
			if f.Type == "ended" && f.Call == call {
				return f.Reason
			}
		default:
			return ""
		}
	}
}

// stage names a failure at a stage of a call: timeout:incoming. An empty
// reason (counted by the reader already) stays empty.
func stage(reason, at string) string {
	if reason == "" {
		return ""
	}
	return reason + ":" + at
}
