//go:build faults

package faults

import (
	"fmt"
	"slices"
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
	tr := startTraffic(t, pairs)
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
	checkContinued(t, r, pairs)
	hangup(t, r, pairs)
	probeIdle(t, r, idlePairs(pairs))
}
