//go:build faults

package faults

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// pair is two users in one accepted call: a called b.
type pair struct {
	a, b *client
	call string
	// base is how many signals each side had received when the fault's
	// recovery was declared; a continued call receives more after it.
	baseA, baseB int
}

// users makes n clients with distinct user ids (unicode and dots included:
// user ids are opaque).
func users(t testing.TB, m *mesh, prefix string, n int) []*client {
	var cs []*client
	for i := range n {
		cs = append(cs, newClient(t, m, fmt.Sprintf("%s.%d@exämple", prefix, i)))
	}
	return cs
}

// establish has a invite b and b accept; both must see accepted.
func establish(a, b *client) (string, error) {
	call, _, err := a.invite(b.user)
	if err != nil {
		return "", err
	}
	if _, err := a.await(10*time.Second, "ringing", func(e *messages.Envelope) bool {
		return e.Call == call && (e.Type == messages.TypeRinging || e.Type == messages.TypeEnded)
	}); err != nil {
		return call, err
	}
	if reasons := a.endedReasons(call); len(reasons) > 0 {
		return call, fmt.Errorf("%s invited %s: ended %v", a, b, reasons)
	}
	if _, err := b.awaitCall(10*time.Second, messages.TypeIncoming, call); err != nil {
		return call, err
	}
	if err := b.act(messages.TypeAccept, call); err != nil {
		return call, err
	}
	for _, c := range []*client{a, b} {
		if _, err := c.awaitCall(10*time.Second, messages.TypeAccepted, call); err != nil {
			return call, err
		}
	}
	return call, nil
}

// makePairs connects n pairs, a on gateway gwA(i) and b on gwB(i), and
// establishes a call in each.
func makePairs(t testing.TB, m *mesh, name string, n int, gwA, gwB func(i int) int) []*pair {
	t.Helper()
	as, bs := users(t, m, name+"-a", n), users(t, m, name+"-b", n)
	var ps []*pair
	for i := range n {
		as[i].mustDial(gwA(i))
		bs[i].mustDial(gwB(i))
		call, err := establish(as[i], bs[i])
		if err != nil {
			t.Fatalf("pair %d before the fault: %v", i, err)
		}
		ps = append(ps, &pair{a: as[i], b: bs[i], call: call})
	}
	return ps
}

// traffic sends one numbered signal from each side of every pair every
// interval, until stopped. A side that is quiet or away sends nothing.
type traffic struct {
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// signalInterval is the pace of each side of a call: 20 signals/s, well
// under the per-connection rate limit, like a burst of ICE candidates.
const signalInterval = 50 * time.Millisecond

// startTraffic starts the pairs' traffic; it is halted at the end of t at
// the latest.
func startTraffic(t testing.TB, pairs []*pair) *traffic {
	return startTicking(t, signalInterval, func() {
		for _, p := range pairs {
			for _, c := range []*client{p.a, p.b} {
				if !c.quiet.Load() {
					c.signal(p.call)
				}
			}
		}
	})
}

// startTicking runs tick every interval until the traffic is halted, at
// the end of t at the latest.
func startTicking(t testing.TB, interval time.Duration, tick func()) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	t.Cleanup(tr.halt)
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-tr.stop:
				return
			case <-ticker.C:
			}
			tick()
		}
	}()
	return tr
}

// halt stops the traffic and waits for its last write. Only the first call
// does anything.
func (tr *traffic) halt() {
	tr.once.Do(func() { close(tr.stop) })
	tr.wg.Wait()
}

// markRecovered records how many signals each side has so far.
func markRecovered(pairs []*pair) {
	for _, p := range pairs {
		p.baseA, p.baseB = p.a.received(p.call), p.b.received(p.call)
	}
}

// settle waits until every signal of the pairs has been acknowledged and
// every acknowledged one has arrived, or the bound passes, so that
// in-flight signals are not counted lost (nor missed: an ack arriving after
// the check would make its signal owed).
func settle(pairs []*pair, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		done := true
		for _, p := range pairs {
			if p.a.unacked() > 0 || p.b.unacked() > 0 {
				done = false // a signal's ack is on its way: the signal may be too
			}
			if l, _ := p.b.lostFrom(p.a, p.call); l > 0 {
				done = false
			}
			if l, _ := p.a.lostFrom(p.b, p.call); l > 0 {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkContinued books the pairs whose call should have survived the
// fault: lost signals, and whether each continued (no ended, signals
// flowing both ways after recovery; a lost signal is booked on its own).
// Traffic must be halted. The scenario sets r.continuedWant up front, so
// that a scenario that fails early still shows what it owed.
func checkContinued(t testing.TB, r *row, pairs []*pair) {
	t.Helper()
	settle(pairs, 5*time.Second)
	for _, p := range pairs {
		ok := true
		for _, d := range [][2]*client{{p.a, p.b}, {p.b, p.a}} {
			lost, detail := d[1].lostFrom(d[0], p.call)
			if lost > 0 {
				t.Errorf("LOST SIGNAL: %s", detail)
				r.lostSignal += lost
			}
		}
		if ra, rb := p.a.endedReasons(p.call), p.b.endedReasons(p.call); len(ra)+len(rb) > 0 {
			t.Errorf("call %s of %s and %s ended: %v / %v", p.call, p.a, p.b, ra, rb)
			ok = false
		}
		if p.a.received(p.call) <= p.baseA || p.b.received(p.call) <= p.baseB {
			t.Errorf("call %s of %s and %s: no signals after recovery (%d→%d, %d→%d)", p.call, p.a, p.b,
				p.baseA, p.a.received(p.call), p.baseB, p.b.received(p.call))
			ok = false
		}
		if ok {
			r.continued++
		}
	}
}

// hangup ends each pair's call by a's hangup; b must get ended{hangup}.
// A refused hangup or a missing ended is booked.
func hangup(t testing.TB, r *row, pairs []*pair) {
	t.Helper()
	for _, p := range pairs {
		if err := p.a.act(messages.TypeHangup, p.call); err != nil {
			t.Errorf("hangup: %v", err)
			continue
		}
		reason, err := p.b.awaitEnded(slack, p.call)
		switch {
		case err != nil:
			t.Errorf("LOST ENDED: %v", err)
			r.lostEnded++
		case reason != messages.ReasonHangup:
			t.Errorf("%s: call %s ended %s, want hangup", p.b, p.call, reason)
		}
	}
}

// probeIdle invites, for every pair of idle users, b from a and then a
// from b: each must ring (incoming on the callee) and is then cancelled.
// A busy or invalid_state answer is a ghost busy.
func probeIdle(t testing.TB, r *row, pairs [][2]*client) {
	t.Helper()
	for _, p := range pairs {
		for _, d := range [][2]*client{{p[0], p[1]}, {p[1], p[0]}} {
			probe(t, r, d[0], d[1])
		}
	}
}

func probe(t testing.TB, r *row, a, b *client) {
	t.Helper()
	call, refusal, err := a.invite(b.user)
	if err != nil {
		if errorCode(refusal) == messages.CodeInvalidState {
			t.Errorf("GHOST BUSY: %s is busy after every call ended: %v", a, err)
			r.ghostBusy++
			return
		}
		t.Errorf("probe invite: %v", err)
		return
	}
	e, err := a.await(slack, "ringing", func(e *messages.Envelope) bool {
		return e.Call == call && (e.Type == messages.TypeRinging || e.Type == messages.TypeEnded)
	})
	if err != nil {
		t.Errorf("probe: %v", err)
		return
	}
	if e.Type == messages.TypeEnded {
		if e.Reason == messages.ReasonBusy {
			t.Errorf("GHOST BUSY: %s is busy after every call ended", b)
			r.ghostBusy++
		} else {
			t.Errorf("probe %s→%s: ended %s", a, b, e.Reason)
		}
		return
	}
	if _, err := b.awaitCall(slack, messages.TypeIncoming, call); err != nil {
		t.Errorf("probe: %v", err)
	}
	if err := a.act(messages.TypeHangup, call); err != nil {
		t.Errorf("probe cancel: %v", err)
		return
	}
	if reason, err := b.awaitEnded(slack, call); err != nil {
		t.Errorf("LOST ENDED: probe: %v", err)
		r.lostEnded++
	} else if reason != messages.ReasonCancelled {
		t.Errorf("probe %s→%s: callee got ended %s, want cancelled", a, b, reason)
	}
}

// idlePairs is the users of pairs, as pairs to probe.
func idlePairs(pairs []*pair) [][2]*client {
	var ps [][2]*client
	for _, p := range pairs {
		ps = append(ps, [2]*client{p.a, p.b})
	}
	return ps
}

// maxOf is the largest of ds.
func maxOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}
