package meshtest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// dropped drops c's socket and waits until its gateway g has noticed: what
// is sent to c from then on is held for its resume.
func dropped(t *testing.T, m *Mesh, g int, c *Client) {
	t.Helper()
	before := m.Gateways[g].Connections()
	c.Drop()
	natstest.Eventually(t, "the gateway notices the drop", func() bool { return m.Gateways[g].Connections() < before })
}

// expectResumed checks a resumed welcome: same session, a new token, and
// the live call as want.
func expectResumed(t *testing.T, old, c *Client, want ...messages.CallInfo) {
	t.Helper()
	w := c.Welcome
	if !w.Resumed || w.Conn != old.Conn || w.Resume == "" || w.Resume == old.Welcome.Resume {
		t.Fatalf("welcome after resume: resumed=%v conn=%s (was %s) token changed=%v", w.Resumed, w.Conn, old.Conn, w.Resume != old.Welcome.Resume)
	}
	if len(w.Calls) != len(want) {
		t.Fatalf("welcome lists calls %+v, want %+v", w.Calls, want)
	}
	for i := range want {
		if w.Calls[i] != want[i] {
			t.Fatalf("welcome lists calls %+v, want %+v", w.Calls, want)
		}
	}
}

// A dropped client that resumes within the grace, on the same or another
// gateway, keeps its session and its call, and gets what was sent to it
// while it was away, in order.
func TestResumeKeepsTheCallAndWhatWasMissed(t *testing.T) {
	mesh := Start(t, Options{ResumeGrace: 3 * time.Second})
	for _, tc := range []struct {
		name string
		to   int
	}{{"same gateway", 0}, {"other gateway", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			m := mesh.For(t)
			alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
			call := Establish(alice, bob)
			alice.Signal(call, 0)
			bob.ExpectSignal(call, 0)

			dropped(t, m, 0, alice)
			for n := 1; n <= 20; n++ {
				bob.Signal(call, n)
			}
			again := m.Resume(tc.to, alice)
			expectResumed(t, alice, again, messages.CallInfo{Call: call, State: "accepted", Role: "caller", Peer: "bob"})
			for n := 1; n <= 20; n++ {
				again.ExpectSignal(call, n)
			}
			// The call goes on both ways, past the old socket's grace.
			again.Signal(call, 21)
			bob.ExpectSignal(call, 21)
			bob.Signal(call, 22)
			again.ExpectSignal(call, 22)
			time.Sleep(3*time.Second + 500*time.Millisecond)
			again.Signal(call, 23)
			bob.ExpectSignal(call, 23)
			m.Barrier(bob)
			m.Barrier(again)
			again.Do(messages.TypeHangup, call)
			bob.ExpectEnded(call, messages.ReasonHangup)
		})
	}
}

// A resume while the old socket is still open (the client gave up on it
// first) takes the session over and closes the old socket with 4001.
func TestResumeTakesOverAnOpenSocket(t *testing.T) {
	m := Start(t, Options{})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	again := m.Resume(1, alice)
	expectResumed(t, alice, again, messages.CallInfo{Call: call, State: "accepted", Role: "caller", Peer: "bob"})
	if code := alice.ExpectClosed(); code != messages.CloseTakenOver {
		t.Fatalf("old socket closed with %v, want 4001", code)
	}
	bob.Signal(call, 1)
	again.ExpectSignal(call, 1)
	again.Signal(call, 2)
	bob.ExpectSignal(call, 2)
}

// A ringing callee device that drops and resumes still rings and can
// answer; an incoming sent while it was away is delivered on resume.
func TestResumeWhileRinging(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 3 * time.Second})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	dropped(t, m, 1, bob)
	call := alice.Invite("bob") // bob's session is in its grace: not offline
	alice.Expect(messages.TypeRinging)
	again := m.Resume(0, bob)
	expectResumed(t, bob, again, messages.CallInfo{Call: call, State: "ringing", Role: "callee", Peer: "alice"})
	if in := again.Expect(messages.TypeIncoming); in.Call != call || in.From != "alice" {
		t.Fatalf("missed incoming: %s", describe(in))
	}
	again.Do(messages.TypeAccept, call)
	again.Expect(messages.TypeAccepted)
	alice.Expect(messages.TypeAccepted)
	alice.Signal(call, 1)
	again.ExpectSignal(call, 1)
}

// Past the grace the session is gone: the other party heard ended
// {disconnected}, and the resume gets a fresh session with no calls.
func TestResumeAfterTheGraceStartsAfresh(t *testing.T) {
	m := Start(t, Options{})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	alice.Drop()
	bob.ExpectEnded(call, messages.ReasonDisconnected)
	again := m.Resume(1, alice)
	if w := again.Welcome; w.Resumed || w.Conn == alice.Conn || len(w.Calls) != 0 {
		t.Fatalf("late resume: resumed=%v conn=%s (old %s) calls=%v", w.Resumed, w.Conn, alice.Conn, w.Calls)
	}
	bob.Invite("alice") // nobody is left busy
	bob.Expect(messages.TypeRinging)
	again.Expect(messages.TypeIncoming)
}

// A resume token works once, and only for its own user.
func TestResumeTokenIsSingleUseAndPersonal(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 3 * time.Second})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	// Bob's token with alice's resume token: a fresh session for bob.
	mallory, _, err := m.DialRaw(1, m.Token("bob"), "resume="+alice.Welcome.Resume)
	if err != nil {
		t.Fatal(err)
	}
	if w := mallory.Welcome; w.Resumed || w.Conn == alice.Conn || len(w.Calls) != 0 {
		t.Fatalf("bob resumed alice's session: %+v", w)
	}
	bob.Signal(call, 1)
	alice.ExpectSignal(call, 1) // alice's session is untouched

	again := m.Resume(1, alice)
	expectResumed(t, alice, again, messages.CallInfo{Call: call, State: "accepted", Role: "caller", Peer: "bob"})
	alice.ExpectClosed()
	replay, _, err := m.DialRaw(0, m.Token("alice"), "resume="+alice.Welcome.Resume)
	if err != nil {
		t.Fatal(err)
	}
	if replay.Welcome.Resumed {
		t.Fatal("a used resume token resumed the session again")
	}
	bob.Signal(call, 2)
	again.ExpectSignal(call, 2) // still with the first resume
}

// SIGTERM-style drain: clients get goaway, resume on another gateway with
// their calls, and the draining gateway stops once they have moved.
func TestDrainMovesClientsWithTheirCalls(t *testing.T) {
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.DrainTimeout = time.Minute }})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stopped <- m.Gateways[0].Server.Shutdown(ctx)
	}()
	alice.Expect(messages.TypeGoaway)
	if _, resp, err := m.DialRaw(0, m.Token("carol"), ""); err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("a draining gateway accepted a connection: %v %v", err, resp)
	}
	// The client leaves the draining gateway, as callmesh.js does on goaway;
	// what is sent to it meanwhile is held for it.
	dropped(t, m, 0, alice)
	bob.Signal(call, 1)
	again := m.Resume(1, alice)
	expectResumed(t, alice, again, messages.CallInfo{Call: call, State: "accepted", Role: "caller", Peer: "bob"})
	again.ExpectSignal(call, 1)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(Wait):
		t.Fatalf("the gateway still drains %v after its last client moved", Wait)
	}
	again.Signal(call, 2)
	bob.ExpectSignal(call, 2)
}

// Clients that do not move before the drain timeout are closed with 1012.
func TestDrainClosesStayersWith1012(t *testing.T) {
	m := Start(t, Options{})
	alice := m.Dial(0, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := m.Gateways[0].Server.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	alice.Expect(messages.TypeGoaway)
	if code := alice.ExpectClosed(); code != websocket.StatusServiceRestart {
		t.Fatalf("closed with %v, want 1012", code)
	}
}

// A crashed gateway's clients that resume elsewhere within the grace keep
// their calls (the routers' monitor does not end them), and get the
// signals sent to them while no gateway held their session.
func TestResumeAfterGatewayCrash(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 2 * time.Second})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	bob.Signal(call, 1)
	alice.ExpectSignal(call, 1)
	m.Gateways[0].Crash()
	alice.Drop() // the client's socket dies with the machine
	// Nobody holds alice's session now: core NATS drops these. bob's
	// gateway replays them when alice resumes.
	for n := 2; n <= 6; n++ {
		bob.Signal(call, n)
	}
	again := m.Resume(1, alice)
	expectResumed(t, alice, again, messages.CallInfo{Call: call, State: "accepted", Role: "caller", Peer: "bob"})
	for n := 2; n <= 6; n++ { // 1 again is dropped as a repeat
		again.ExpectSignal(call, n)
	}
	again.Signal(call, 1)
	bob.ExpectSignal(call, 1)
	// Past the dead gateway's heartbeat TTL (1s) and the grace, the call
	// still stands.
	time.Sleep(4 * time.Second)
	bob.Signal(call, 7)
	again.ExpectSignal(call, 7)
	m.Barrier(bob)
}

// A call event sent while the gateway holding a session is dead is not
// lost: the router tries again until the session resumes elsewhere, and
// delivers it there.
func TestCallEventsFollowASessionWhoseGatewayDied(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 2 * time.Second})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	m.Gateways[0].Crash()
	alice.Drop()
	bob.Do(messages.TypeHangup, call) // to alice's connection on the dead gateway
	again := m.Resume(1, alice)
	expectResumed(t, alice, again) // the call is over
	again.ExpectEnded(call, messages.ReasonHangup)
	m.Barrier(again)
}

// A session that would hold more than it may while away ends at once
// rather than lose frames: the other party hears ended{disconnected} and a
// resume starts afresh.
func TestResumeHoldIsBounded(t *testing.T) {
	m := Start(t, Options{ResumeGrace: time.Minute, Gateway: func(c *gateway.Config) {
		c.MessageRate, c.MessageBurst = 1e6, 1e6
	}})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	dropped(t, m, 0, alice)
	for n := range 1100 {
		bob.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: []byte(`{"n":` + strconv.Itoa(n) + `}`)})
	}
	bob.ExpectEnded(call, messages.ReasonDisconnected)
	again := m.Resume(1, alice)
	if again.Welcome.Resumed {
		t.Fatal("a session that lost frames was resumed")
	}
}

// After a gateway's NATS connection comes back, both parties of its calls
// have their signals replayed; the client sees each once and in order.
func TestSignalsAfterNATSReconnect(t *testing.T) {
	m := Start(t, Options{})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	exchange := func(from, to int) {
		for n := from; n <= to; n++ {
			alice.Signal(call, n)
		}
		for n := from; n <= to; n++ {
			bob.ExpectSignal(call, n)
		}
		for n := from; n <= to; n++ {
			bob.Signal(call, n)
		}
		for n := from; n <= to; n++ {
			alice.ExpectSignal(call, n)
		}
	}
	exchange(1, 5)
	if err := m.Gateways[0].NC.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, "gateway 0 reconnected", func() bool {
		return m.Gateways[0].NC.Stats().Reconnects > 0 && m.Gateways[0].NC.IsConnected()
	})
	exchange(6, 10)
	m.Barrier(alice) // no repeat of 1–10 is on its way
	m.Barrier(bob)
}
