//go:build faults

package faults

import (
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// natsKillRestart: with calls up and signalling, the NATS node leading the
// calls bucket's stream is SIGKILLed; new calls must work again after the
// leader election (users retry until one does) and existing calls must
// continue. The node then restarts with its store and rejoins; every call
// must still be known (its hangup reaches the peer) and every user be
// callable. Time: kill → the first new call accepted.
func natsKillRestart(t *testing.T, m *mesh, r *row, n int) {
	pairs := makePairs(t, m, "nk", n, func(i int) int { return i % 3 }, func(i int) int { return (i + 1) % 3 })
	r.inFlight, r.continuedWant = len(pairs), len(pairs)
	k := max(n/4, 1)
	newA, newB := users(t, m, "nk-new-a", k), users(t, m, "nk-new-b", k)
	for i := range k {
		newA[i].mustDial(i % 3)
		newB[i].mustDial((i + 2) % 3)
	}
	tr := startTraffic(t, pairs)
	time.Sleep(500 * time.Millisecond)

	victim := m.nats.streamLeader("KV_" + messages.DefaultPrefix + "_calls")
	if victim == nil {
		t.Log("stream leader unknown; killing n1")
		victim = m.nats.nodes[0]
	}
	t.Logf("killing %s", victim.name)
	killed := time.Now()
	victim.proc.kill()

	var recovered time.Duration
	var newPairs []*pair
	for i := range k {
		var call string
		var err error
		for attempt := 0; ; attempt++ {
			call, err = establish(newA[i], newB[i])
			if err == nil {
				break
			}
			if time.Since(killed) > 30*time.Second {
				t.Fatalf("no new call 30 s after losing a NATS node: %v", err)
			}
			t.Logf("new call attempt %d, %v after the kill: %v", attempt, time.Since(killed), err)
			if call != "" {
				_ = newA[i].act(messages.TypeHangup, call)
				_, _ = newB[i].awaitEnded(slack, call)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if i == 0 {
			recovered = time.Since(killed)
		}
		newPairs = append(newPairs, &pair{a: newA[i], b: newB[i], call: call})
	}
	r.time = "new call " + ms(recovered)
	time.Sleep(time.Second)

	m.nats.restart(victim)
	all := append(append([]*pair(nil), pairs...), newPairs...)
	tr.halt()
	tr = startTraffic(t, all)
	markRecovered(all)
	time.Sleep(time.Second)
	tr.halt()
	checkContinued(t, r, pairs)
	checkNew := &row{}
	checkContinued(t, checkNew, newPairs)
	r.lostSignal += checkNew.lostSignal
	hangup(t, r, all)
	probeIdle(t, r, idlePairs(all))
}
