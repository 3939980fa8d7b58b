package meshtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// Test 5: no answer within the ring timeout ends the call on both sides,
// even when the router that created the call has gone.
func TestNoAnswer(t *testing.T) {
	m := Start(t, Options{Routers: 1, RingTimeout: time.Second})
	alice, phone, laptop := m.Dial(0, "alice"), m.Dial(1, "bob"), m.Dial(0, "bob")
	call := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	phone.Expect(messages.TypeIncoming)
	laptop.Expect(messages.TypeIncoming)

	// The only router that knew of the call is replaced.
	m.AddRouter()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Routers[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	alice.ExpectEnded(call, messages.ReasonNoAnswer)
	phone.ExpectEnded(call, messages.ReasonNoAnswer)
	laptop.ExpectEnded(call, messages.ReasonNoAnswer)
	// Nobody is left busy.
	call = phone.Invite("alice")
	phone.Expect(messages.TypeRinging)
	alice.Expect(messages.TypeIncoming)
}

// Test 6: a caller who leaves while ringing stops the callee's devices; a
// party who drops out of a call ends it for the other after the grace.
func TestDisconnects(t *testing.T) {
	mesh := Start(t, Options{})

	t.Run("caller drops while ringing", func(t *testing.T) {
		m := mesh.For(t)
		alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
		call := alice.Invite("bob")
		bob.Expect(messages.TypeIncoming)
		alice.Drop()
		bob.ExpectEnded(call, messages.ReasonDisconnected)
		bob.Send(&messages.Envelope{Type: messages.TypeBye})
		bob.ExpectClosed()
	})
	t.Run("caller says bye while ringing", func(t *testing.T) {
		m := mesh.For(t)
		alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
		call := alice.Invite("bob")
		bob.Expect(messages.TypeIncoming)
		alice.Send(&messages.Envelope{Type: messages.TypeBye})
		bob.ExpectEnded(call, messages.ReasonCancelled)
		bob.Send(&messages.Envelope{Type: messages.TypeBye})
		bob.ExpectClosed()
	})
	t.Run("party drops in a call", func(t *testing.T) {
		m := mesh.For(t)
		alice, bob, carol := m.Dial(0, "alice"), m.Dial(1, "bob"), m.Dial(1, "carol")
		call := Establish(alice, bob)
		bob.Drop()
		alice.ExpectEnded(call, messages.ReasonDisconnected)
		// alice is free at once.
		alice.Invite("carol")
		alice.Expect(messages.TypeRinging)
		carol.Expect(messages.TypeIncoming)
	})
	t.Run("one of two ringing devices drops", func(t *testing.T) {
		m := mesh.For(t)
		alice, phone, laptop := m.Dial(0, "dora"), m.Dial(0, "eve"), m.Dial(1, "eve")
		call := alice.Invite("eve")
		alice.Expect(messages.TypeRinging)
		phone.Expect(messages.TypeIncoming)
		laptop.Expect(messages.TypeIncoming)
		leaves := m.RouterRequests(messages.OpLeave)
		phone.Drop()
		natstest.WaitFor(t, "the router hears the phone left", func() error {
			if n := m.RouterRequests(messages.OpLeave); n <= leaves {
				return fmt.Errorf("%d leave requests", n)
			}
			return nil
		})
		m.Barrier(alice) // still ringing
		laptop.Do(messages.TypeAccept, call)
		alice.Expect(messages.TypeAccepted)
		// The last device drops: the call ends for the caller.
		laptop.Drop()
		alice.ExpectEnded(call, messages.ReasonDisconnected)
	})
	t.Run("last ringing device drops", func(t *testing.T) {
		m := mesh.For(t)
		alice, bob := m.Dial(0, "fay"), m.Dial(1, "gus")
		call := alice.Invite("gus")
		alice.Expect(messages.TypeRinging)
		bob.Expect(messages.TypeIncoming)
		bob.Drop()
		alice.ExpectEnded(call, messages.ReasonDisconnected)
	})
}

// A crashed gateway's connections end their calls after the heartbeat TTL
// and the grace, and their users stop being busy or online.
func TestGatewayCrash(t *testing.T) {
	m := Start(t, Options{Gateways: 3})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	m.Gateways[1].Crash()
	alice.ExpectEnded(call, messages.ReasonDisconnected)
	offline := alice.Invite("bob")
	alice.ExpectEnded(offline, messages.ReasonOffline)
	// bob comes back on another gateway and is not busy.
	bob = m.Dial(2, "bob")
	call = alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
}
