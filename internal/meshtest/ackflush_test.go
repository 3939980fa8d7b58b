package meshtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// An ack of a signal means the NATS server has the signal, so a gateway
// killed right after its ack loses no signal its client was told had gone
// (the client does not send an acked signal again). The test stalls the
// link between alice's gateway and NATS, so that what the gateway
// publishes stays in its NATS client's buffer, the state a SIGKILL loses:
// no ack (and nothing queued after it) may reach alice then. Once the link
// goes on, the ack comes, in order. Then the gateway dies with a signal in
// that state; alice resumes on bob's gateway, and bob must have every
// signal alice got an ack for.
func TestSignalAckMeansNATSHasIt(t *testing.T) {
	m := Start(t, Options{Gateways: 1, ResumeGrace: 3 * time.Second})
	link := startLinkProxy(t, m.NATS.Addr().String())
	nc, err := nats.Connect(link.URL(), nats.Name("gateway"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	gw := m.AddGatewayOn(0, nc) // gateway 1
	alice, bob := m.Dial(1, "alice"), m.Dial(0, "bob")
	call := Establish(alice, bob)
	stalled := func(n int) { t.Helper(); signalStalled(t, link, gw, alice, call, n) }

	stalled(1)
	if len(bob.frames) > 0 {
		t.Fatalf("bob got %s through a stalled link", describe(<-bob.frames))
	}
	link.Resume()
	expectAckThenPong(alice, 1)
	bob.ExpectSignal(call, 1)

	// The gateway dies with signal 2 in its NATS client's buffer: its
	// link is reset and nothing it sends reaches NATS any more.
	stalled(2)
	link.Cut()
	nc.Close()   // a dead process reconnects to nothing
	alice.Drop() // the client's socket dies with the machine
	<-alice.closed
	for len(alice.frames) > 0 {
		if e := <-alice.frames; e.Type == messages.TypeAck {
			t.Fatalf("alice got %s for a signal that never reached NATS", describe(e))
		}
	}

	// Alice resumes on bob's gateway. Signal 1, acked, reached bob; signal
	// 2, never acked, is lost with the gateway, and alice knows not to
	// count on it. The call goes on.
	again := m.Resume(0, alice)
	expectResumed(t, alice, again, messages.CallInfo{Call: call, State: "accepted", Role: "caller", Peer: "bob"})
	again.Signal(call, 3)
	bob.ExpectSignal(call, 3)
	m.Barrier(bob)
	m.Barrier(again)
}

// signalStalled pauses link, then has c send signal n of call with an id
// and a ping behind it, and waits until c's gateway gw has published the
// signal and holds its ack. No frame may reach c meanwhile: NATS does not
// have the signal.
func signalStalled(t *testing.T, link *linkProxy, gw *Gateway, c *Client, call string, n int) {
	t.Helper()
	link.Pause()
	c.Send(&messages.Envelope{Type: messages.TypeSignal, ID: fmt.Sprintf("sig-%d", n), Call: call,
		Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
	c.Send(&messages.Envelope{Type: messages.TypePing, ID: fmt.Sprintf("ping-%d", n)})
	natstest.Eventually(t, "the gateway holds the ack of a signal, or the client has a frame", func() bool {
		return gw.Gauge("callmesh_gateway_signal_acks_waiting") == 1 || len(c.frames) > 0
	})
	if len(c.frames) > 0 {
		t.Fatalf("%s got %s while its gateway's link to NATS was stalled: NATS does not have the signal yet",
			c, describe(<-c.frames))
	}
}

// expectAckThenPong expects the ack of signal n, then the pong of the ping
// sent behind it (signalStalled).
func expectAckThenPong(c *Client, n int) {
	c.t.Helper()
	c.ExpectAck(fmt.Sprintf("sig-%d", n))
	if pong := c.Expect(messages.TypePong); pong.ID != fmt.Sprintf("ping-%d", n) {
		c.t.Fatalf("%s: pong %q, want ping-%d", c, pong.ID, n)
	}
}

// When the link between a gateway and NATS breaks with a signal on it, the
// ack waits until the gateway is connected again, then comes, in order;
// the signal, lost with the link, reaches the other party all the same
// (the reconnect's replay, replay.go).
func TestSignalAckWaitsAcrossNATSReconnect(t *testing.T) {
	m := Start(t, Options{Gateways: 1})
	link := startLinkProxy(t, m.NATS.Addr().String())
	nc, err := nats.Connect(link.URL(), nats.Name("gateway"), nats.MaxReconnects(-1),
		nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	gw := m.AddGatewayOn(0, nc)
	alice, bob := m.Dial(1, "alice"), m.Dial(0, "bob")
	call := Establish(alice, bob)

	signalStalled(t, link, gw, alice, call, 1)
	link.Cut() // signal 1 is lost with the link
	if len(alice.frames) > 0 {
		t.Fatalf("alice got %s while her gateway was cut off from NATS", describe(<-alice.frames))
	}
	link.Heal()
	expectAckThenPong(alice, 1)
	bob.ExpectSignal(call, 1)
	alice.Signal(call, 2)
	bob.ExpectSignal(call, 2)
	m.Barrier(bob)
}
