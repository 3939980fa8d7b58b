//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// gatewayKillResume: gateway 0 is SIGKILLed; its clients notice their
// connection die and resume on gateway 1 or 2 at once. Every call must
// continue without a lost signal. Time: kill → the last resumed welcome.
func gatewayKillResume(t *testing.T, m *mesh, r *row, n int) {
	pairs, victims := victimPairs(t, m, "gwkill", n)
	r.inFlight, r.continuedWant = len(pairs), len(pairs)
	tr := startTraffic(t, pairs)
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
	tr := startTraffic(t, pairs)
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
	tr := startTraffic(t, pairs)
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
	checkContinued(t, r, pairs)
	hangup(t, r, pairs)
	probeIdle(t, r, idlePairs(pairs))
}
