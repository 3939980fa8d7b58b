//go:build faults

package faults

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// churnStats is what the pairs of routerKill report, guarded by mu.
type churnStats struct {
	mu       sync.Mutex
	r        *row
	killedAt time.Time     // zero until the kill
	slowest  time.Duration // slowest invite → ack after the kill
	live     atomic.Int32  // calls between ack and outcome
}

// routerKill: pairs make calls back to back (every fourth left unanswered
// until the ring timeout; the others accepted, signalled both ways, probed
// by a third user who must get busy, and hung up by either side) while
// router 0 is SIGKILLed a quarter of the way in, restarted, and router 1
// SIGKILLed halfway (calls in flight: those live at the first kill). Every call must end with
// the reason its parties expect; no invite may ring a user in a call.
// Time: the slowest invite → ack after the first kill.
func routerKill(t *testing.T, m *mesh, r *row, n int) {
	as, bs, ps := users(t, m, "rk-a", n), users(t, m, "rk-b", n), users(t, m, "rk-p", n)
	for i := range n {
		as[i].mustDial(i % 3)
		bs[i].mustDial((i + 1) % 3)
		ps[i].mustDial((i + 2) % 3)
	}
	run := 12 * time.Second
	if testing.Short() {
		run = 8 * time.Second
	}
	st := &churnStats{r: r}
	end := time.Now().Add(run)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			churn(t, st, i, as[i], bs[i], ps[i], end)
		}()
	}
	killRoutersInTurn(m, st, run, func() {})
	wg.Wait()
	r.time = "recover " + ms(st.slowest)

	var idle [][2]*client
	for i := range n {
		idle = append(idle, [2]*client{as[i], bs[i]}, [2]*client{ps[i], bs[i]})
	}
	probeIdle(t, r, idle)
}

// killRoutersInTurn SIGKILLs router 0 a quarter of the way into a run of
// length run, then restarts it a quarter later and SIGKILLs router 1: what
// router 1 created (and the ring timeouts it had armed) is now router 0's
// to finish. Each kill waits for ready to return; the first books what is
// in flight (st.live) in the row.
func killRoutersInTurn(m *mesh, st *churnStats, run time.Duration, ready func()) {
	time.Sleep(run / 4)
	ready()
	st.mu.Lock()
	st.r.inFlight = int(st.live.Load())
	st.killedAt = time.Now()
	st.mu.Unlock()
	m.routers[0].kill()
	time.Sleep(run / 4)
	m.routers[0].run()
	m.routers[0].waitHealthy()
	ready()
	m.routers[1].kill()
}

// churn is one pair's calls until end. It stops at the first call that
// cannot be set up: what follows would only repeat the failure.
func churn(t *testing.T, st *churnStats, i int, a, b, p *client, end time.Time) {
	for iter := 0; time.Now().Before(end); iter++ {
		unanswered := (i+iter)%4 == 3
		start := time.Now()
		call, _, err := a.invite(b.user)
		if err != nil {
			t.Errorf("CALL FAILED: %v", err)
			st.book(func(r *row) { r.endedWant++ })
			return
		}
		st.live.Add(1)
		st.invited(start)
		if unanswered {
			st.book(func(r *row) { r.endedWant++ })
			ok := true
			if _, err := b.awaitCall(slack, messages.TypeIncoming, call); err != nil {
				t.Errorf("%v", err)
				ok = false
			}
			for _, c := range []*client{a, b} {
				reason, err := c.awaitEnded(ringTimeout+slack, call)
				switch {
				case err != nil:
					t.Errorf("LOST ENDED: no_answer: %v", err)
					st.book(func(r *row) { r.lostEnded++ })
					ok = false
				case reason != messages.ReasonNoAnswer:
					t.Errorf("%s: call %s ended %s, want no_answer", c, call, reason)
					ok = false
				}
			}
			st.live.Add(-1)
			if ok {
				st.book(func(r *row) { r.endedOK++ })
			}
			continue
		}

		st.book(func(r *row) { r.endedWant++; r.continuedWant++ })
		if err := answer(a, b, call); err != nil {
			t.Errorf("CALL FAILED: %v", err)
			st.live.Add(-1)
			return
		}
		continued := true
		for range 5 {
			a.signal(call)
			b.signal(call)
			time.Sleep(20 * time.Millisecond)
		}
		pp := []*pair{{a: a, b: b, call: call}}
		settle(pp, 5*time.Second)
		for _, d := range [][2]*client{{a, b}, {b, a}} {
			if lost, detail := d[1].lostFrom(d[0], call); lost > 0 {
				t.Errorf("LOST SIGNAL: %s", detail)
				st.book(func(r *row) { r.lostSignal += lost })
			}
		}
		probeBusy(t, st, p, b)

		hanger, other := a, b
		if iter%2 == 1 {
			hanger, other = b, a
		}
		if len(a.endedReasons(call))+len(b.endedReasons(call)) > 0 {
			t.Errorf("call %s ended before its hangup: %v / %v", call, a.endedReasons(call), b.endedReasons(call))
			continued = false
		}
		if err := hanger.act(messages.TypeHangup, call); err != nil {
			t.Errorf("hangup: %v", err)
			continued = false
		}
		reason, err := other.awaitEnded(slack, call)
		switch {
		case err != nil:
			t.Errorf("LOST ENDED: hangup: %v", err)
			st.book(func(r *row) { r.lostEnded++ })
		case reason != messages.ReasonHangup:
			t.Errorf("%s: call %s ended %s, want hangup", other, call, reason)
		default:
			st.book(func(r *row) { r.endedOK++ })
		}
		st.live.Add(-1)
		if continued {
			st.book(func(r *row) { r.continued++ })
		}
	}
}

// answer has b accept the ringing call; both must get accepted.
func answer(a, b *client, call string) error {
	if _, err := a.await(slack, "ringing", func(e *messages.Envelope) bool {
		return e.Call == call && (e.Type == messages.TypeRinging || e.Type == messages.TypeEnded)
	}); err != nil {
		return err
	}
	if _, err := b.awaitCall(slack, messages.TypeIncoming, call); err != nil {
		return err
	}
	if err := b.act(messages.TypeAccept, call); err != nil {
		return err
	}
	for _, c := range []*client{a, b} {
		if _, err := c.awaitCall(slack, messages.TypeAccepted, call); err != nil {
			return err
		}
	}
	return nil
}

// probeBusy has p invite b, who is in an accepted call: it must end with
// busy. Ringing instead is a double booking.
func probeBusy(t *testing.T, st *churnStats, p, b *client) {
	call, _, err := p.invite(b.user)
	if err != nil {
		t.Errorf("busy probe: %v", err)
		return
	}
	e, err := p.await(slack, "busy", func(e *messages.Envelope) bool {
		return e.Call == call && (e.Type == messages.TypeRinging || e.Type == messages.TypeEnded)
	})
	switch {
	case err != nil:
		t.Errorf("busy probe: %v", err)
	case e.Type == messages.TypeRinging:
		t.Errorf("DOUBLE BOOKING: %s's invite to %s, who is in a call, rang", p, b)
		st.book(func(r *row) { r.doubleBook++ })
		_ = p.act(messages.TypeHangup, call)
	case e.Reason != messages.ReasonBusy:
		t.Errorf("busy probe: ended %s, want busy", e.Reason)
	}
}

// book changes the row under the lock.
func (st *churnStats) book(f func(*row)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(st.r)
}

// invited records an invite's round trip if it started after the kill.
func (st *churnStats) invited(start time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.killedAt.IsZero() && start.After(st.killedAt) {
		st.slowest = max(st.slowest, time.Since(start))
	}
}
