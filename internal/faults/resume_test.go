//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// victimPairs makes n pairs in which one party (the callee of even pairs,
// the caller of odd ones) is on gateway 0 and the other on gateway 1 or 2,
// and returns the pairs and, per pair, the party on gateway 0.
func victimPairs(t testing.TB, m *mesh, name string, n int) ([]*pair, []*client) {
	t.Helper()
	other := func(i int) int { return 1 + (i/2)%2 }
	pairs := makePairs(t, m, name, n,
		func(i int) int {
			if i%2 == 1 {
				return 0
			}
			return other(i)
		},
		func(i int) int {
			if i%2 == 0 {
				return 0
			}
			return other(i)
		})
	var victims []*client
	for i, p := range pairs {
		if i%2 == 0 {
			victims = append(victims, p.b)
		} else {
			victims = append(victims, p.a)
		}
	}
	return pairs, victims
}

// resumeTo reconnects c to gateway gw with its newest resume token and
// checks the welcome: resumed, the same connection id, call listed.
func resumeTo(c *client, gw int, call string) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	w, err := c.dial(gw, true)
	if err != nil {
		return err
	}
	if !w.Resumed || w.Conn != conn {
		return fmt.Errorf("%s: resume on gateway%d: resumed=%v conn %q (was %q)", c, gw, w.Resumed, w.Conn, conn)
	}
	if !slices.ContainsFunc(w.Calls, func(ci messages.CallInfo) bool { return ci.Call == call && ci.State == "accepted" }) {
		return fmt.Errorf("%s: resumed welcome lists calls %+v, not accepted call %s", c, w.Calls, call)
	}
	return nil
}

// clientDropResume: victims close their TCP connection without a close
// frame, stay away for a second while their peers keep signalling, then
// resume, half on the same gateway and half on another. Every call must
// continue and every signal sent while away must arrive, in order.
// Time: the slowest resume, from dial to welcome.
func clientDropResume(t *testing.T, m *mesh, r *row, n int) {
	pairs, victims := victimPairs(t, m, "drop", n)
	r.inFlight, r.continuedWant = len(pairs), len(pairs)
	tr := startTraffic(pairs)
	defer func() {
		if tr != nil {
			tr.halt()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	for _, v := range victims {
		v.quiet.Store(true)
		v.drop()
	}
	time.Sleep(time.Second) // away, well inside the grace, while peers signal
	var took []time.Duration
	for i, v := range victims {
		gw := 0
		if i%4 >= 2 {
			gw = 1 + i%2
		}
		start := time.Now()
		if err := resumeTo(v, gw, pairs[i].call); err != nil {
			t.Errorf("RESUME: %v", err)
		}
		took = append(took, time.Since(start))
		v.quiet.Store(false)
	}
	r.time = "resume " + ms(maxOf(took))
	markRecovered(pairs)
	time.Sleep(time.Second)
	tr.halt()
	tr = nil
	checkContinued(t, r, pairs)
	hangup(t, r, pairs)
	probeIdle(t, r, idlePairs(pairs))
}

// gatewayKillResume: gateway 0 is SIGKILLed; its clients notice their
// connection die and resume on gateway 1 or 2 at once. Every call must
// continue without a lost signal. Time: kill → the last resumed welcome.
func gatewayKillResume(t *testing.T, m *mesh, r *row, n int) {
	pairs, victims := victimPairs(t, m, "gwkill", n)
	r.inFlight, r.continuedWant = len(pairs), len(pairs)
	tr := startTraffic(pairs)
	defer func() {
		if tr != nil {
			tr.halt()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	killed := time.Now()
	m.gateways[0].kill()
	// Each client at once, as real ones would: notice the dead socket,
	// wait a reconnect jitter, resume on another gateway.
	took := make([]time.Duration, len(victims))
	errs := make(chan error, len(victims))
	var wg sync.WaitGroup
	for i, v := range victims {
		wg.Go(func() {
			for v.connected() {
				if time.Since(killed) > 5*time.Second {
					errs <- fmt.Errorf("%s has not noticed its gateway die", v)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(rand.N(100 * time.Millisecond))
			if err := resumeTo(v, 1+i%2, pairs[i].call); err != nil {
				errs <- fmt.Errorf("RESUME: %w", err)
			}
			took[i] = time.Since(killed)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.time = "recover " + ms(maxOf(took))
	markRecovered(pairs)
	time.Sleep(time.Second)
	tr.halt()
	tr = nil
	checkContinued(t, r, pairs)
	hangup(t, r, pairs)
	probeIdle(t, r, idlePairs(pairs))
}

// gatewayKillGone: gateway 0 is SIGKILLed and its clients never resume.
// Each peer must get ended{disconnected} within presence TTL + grace +
// slack; afterwards the victims connect afresh (their resume token is
// stale: the welcome must not resume) and every user can be called again.
// Time: kill → the last ended.
func gatewayKillGone(t *testing.T, m *mesh, r *row, n int) {
	pairs, victims := victimPairs(t, m, "gone", n)
	r.inFlight, r.endedWant = len(pairs), len(pairs)
	for _, v := range victims {
		v.quiet.Store(true)
	}
	tr := startTraffic(pairs)
	defer func() {
		if tr != nil {
			tr.halt()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	killed := time.Now()
	m.gateways[0].kill()
	bound := presenceTTL + resumeGrace + slack
	var took []time.Duration
	for i, p := range pairs {
		peer := p.a
		if victims[i] == p.a {
			peer = p.b
		}
		reason, err := peer.awaitEnded(time.Until(killed.Add(bound)), p.call)
		switch {
		case err != nil:
			t.Errorf("LOST ENDED: peer of a dead gateway's client, %v after the kill: %v", bound, err)
			r.lostEnded++
		case reason != messages.ReasonDisconnected:
			t.Errorf("%s: call %s ended %s, want disconnected", peer, p.call, reason)
		default:
			r.endedOK++
			peer.mu.Lock()
			took = append(took, peer.endedAt[p.call].Sub(killed))
			peer.mu.Unlock()
		}
	}
	r.time = "detect " + ms(maxOf(took))
	tr.halt()
	tr = nil

	for i, v := range victims {
		w, err := v.dial(1+i%2, true)
		if err != nil {
			t.Fatal(err)
		}
		if w.Resumed {
			t.Errorf("%s resumed after its calls ended with disconnected (welcome %+v)", v, w)
		}
	}
	probeIdle(t, r, idlePairs(pairs))
}

// gatewayTermDrain: gateway 0 gets SIGTERM. It must answer /healthz with
// 503, send goaway{reconnect_ms} to each client, and close the old socket
// with 4001 or 1012 once the client has resumed elsewhere; then exit 0.
// Every call must continue without a lost signal. Time: SIGTERM → the
// last resumed welcome.
func gatewayTermDrain(t *testing.T, m *mesh, r *row, n int) {
	pairs, victims := victimPairs(t, m, "drain", n)
	r.inFlight, r.continuedWant = len(pairs), len(pairs)
	tr := startTraffic(pairs)
	defer func() {
		if tr != nil {
			tr.halt()
		}
	}()
	time.Sleep(500 * time.Millisecond)

	termed := time.Now()
	m.gateways[0].signal(syscall.SIGTERM)
	// Each client at once, as real ones would: wait for goaway, honour its
	// reconnect_ms, resume on another gateway.
	took := make([]time.Duration, len(victims))
	oldGen := make([]int, len(victims))
	errs := make(chan error, 2*len(victims))
	var wg sync.WaitGroup
	for i, v := range victims {
		wg.Go(func() {
			e, err := v.await(5*time.Second, "goaway", func(e *messages.Envelope) bool { return e.Type == messages.TypeGoaway })
			if err != nil {
				errs <- fmt.Errorf("DRAIN: %w", err)
				return
			}
			var g messages.Goaway
			if err := json.Unmarshal(e.Data, &g); err != nil || g.ReconnectMS < 0 {
				errs <- fmt.Errorf("goaway data %s: want reconnect_ms ≥ 0 (%v)", e.Data, err)
			}
			time.Sleep(time.Duration(g.ReconnectMS) * time.Millisecond)
			oldGen[i] = v.generation()
			if err := resumeTo(v, 1+i%2, pairs[i].call); err != nil {
				errs <- fmt.Errorf("RESUME: %w", err)
			}
			took[i] = time.Since(termed)
		})
	}
	waitFor(t, 5*time.Second, func() error {
		if code := m.gateways[0].health(); code != 503 {
			return fmt.Errorf("draining gateway's /healthz answered %d, want 503", code)
		}
		return nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.time = "recover " + ms(maxOf(took))
	for i, v := range victims {
		waitFor(t, 20*time.Second, func() error {
			code, closed := v.closeStatus(oldGen[i])
			switch {
			case !closed:
				return fmt.Errorf("%s: old connection still open", v)
			case code == messages.CloseTakenOver || code == messages.CloseRestart:
				return nil
			default:
				return fmt.Errorf("%s: old connection closed with %d (-1: no close frame), want 4001 or 1012", v, code)
			}
		})
	}
	if !m.gateways[0].wait(30 * time.Second) {
		t.Errorf("draining gateway still runs 30 s after SIGTERM")
	} else if err := m.gateways[0].exitErr(); err != nil {
		t.Errorf("drained gateway exited with %v", err)
	}
	markRecovered(pairs)
	time.Sleep(time.Second)
	tr.halt()
	tr = nil
	checkContinued(t, r, pairs)
	hangup(t, r, pairs)
	probeIdle(t, r, idlePairs(pairs))
}
