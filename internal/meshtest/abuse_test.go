package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// attacker is a raw connection that discards what it receives (so only the
// documented limits, not its own slowness, can stop it) and records how it
// was closed.
type attacker struct {
	ws     *websocket.Conn
	errors map[string]int // error codes received
	closed chan websocket.StatusCode
}

func (m *Mesh) attack(g int, user string) *attacker {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, m.Gateways[g].URL+"?access_token="+m.Token(user), nil)
	if err != nil {
		m.t.Fatal(err)
	}
	ws.SetReadLimit(1 << 20)
	m.t.Cleanup(func() { ws.CloseNow() })
	a := &attacker{ws: ws, errors: map[string]int{}, closed: make(chan websocket.StatusCode, 1)}
	ready := make(chan struct{})
	go func() {
		first := true
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				a.closed <- websocket.CloseStatus(err)
				return
			}
			if first {
				first = false
				close(ready)
				continue
			}
			var e messages.Envelope
			if json.Unmarshal(b, &e) == nil && e.Type == messages.TypeError {
				a.errors[e.Code]++ // read after closed, by the test goroutine only
			}
		}
	}()
	<-ready // welcome
	return a
}

// flood writes frames until the gateway closes the connection or n are sent.
func (a *attacker) flood(n int, frame func(i int) []byte) int {
	for i := range n {
		if a.ws.Write(context.Background(), websocket.MessageText, frame(i)) != nil {
			return i
		}
	}
	return n
}

// rawCallee connects user to gateway g on a socket that nobody reads
// except here: it answers caller's invite, reads up to its accepted and
// returns the call. From then on nothing reads it: a frozen client.
func (m *Mesh) rawCallee(t *testing.T, g int, user string, caller *Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, m.Gateways[g].URL+"?access_token="+m.Token(user), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	next := func(typ string) *messages.Envelope {
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("%s: %v", user, err)
			}
			var e messages.Envelope
			if json.Unmarshal(b, &e) == nil && e.Type == typ {
				return &e
			}
		}
	}
	next(messages.TypeWelcome)
	call := caller.Invite(user)
	caller.Expect(messages.TypeRinging)
	next(messages.TypeIncoming)
	if err := ws.Write(ctx, websocket.MessageText, messages.Encode(&messages.Envelope{Type: messages.TypeAccept, ID: "a", Call: call})); err != nil {
		t.Fatal(err)
	}
	next(messages.TypeAccepted)
	caller.Expect(messages.TypeAccepted)
	return call
}

// closedWith waits for the close and returns its code.
func (a *attacker) closedWith(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case code := <-a.closed:
		return code
	case <-time.After(Wait):
		t.Fatal("attacker still connected")
	}
	return 0
}

// healthy proves the call between alice and bob is unaffected: a signal
// each way arrives intact and nothing else is waiting.
func healthy(t *testing.T, m *Mesh, alice, bob *Client, call string, n int) {
	t.Helper()
	data := json.RawMessage(fmt.Sprintf(`{"candidate":{"candidate":"candidate:%d 1 udp 1 127.0.0.1 9 typ host"}}`, n))
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: data})
	relayed(t, bob, call, "alice", data)
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: data})
	relayed(t, alice, call, "bob", data)
	m.Barrier(alice)
	m.Barrier(bob)
}

func TestAbuse(t *testing.T) {
	// The frozen client's peer sends it megabytes at once: more than the
	// byte limit lets through (TestFlood tests that limit).
	mesh := Start(t, Options{Gateway: func(c *gateway.Config) { c.ByteRate, c.ByteBurst = 1e12, 1<<40 }})
	alice, bob := mesh.Dial(0, "alice"), mesh.Dial(1, "bob")
	call := Establish(alice, bob)

	t.Run("10000 garbage frames", func(t *testing.T) {
		a := mesh.For(t).attack(0, "garbage")
		sent := a.flood(10_000, func(i int) []byte { return []byte(fmt.Sprintf("garbage %d {", i)) })
		if code := a.closedWith(t); code != messages.ClosePolicy {
			t.Fatalf("closed with %d, want %d", code, messages.ClosePolicy)
		}
		// The frames before the limit were answered (refusals are answered
		// only while the flooder's queue has room: PROTOCOL.md §1).
		if a.errors[messages.CodeBadRequest] == 0 {
			t.Fatalf("errors before the close: %v", a.errors)
		}
		t.Logf("closed after %d of 10000 frames; errors %v", sent, a.errors)
		healthy(t, mesh, alice, bob, call, 1)
	})
	t.Run("oversized frame", func(t *testing.T) {
		a := mesh.For(t).attack(1, "big")
		a.flood(1, func(int) []byte { return []byte(`{"type":"ping","id":"` + strings.Repeat("x", 70<<10) + `"}`) })
		if code := a.closedWith(t); code != messages.CloseTooBig {
			t.Fatalf("closed with %d, want %d", code, messages.CloseTooBig)
		}
		healthy(t, mesh, alice, bob, call, 2)
	})
	t.Run("faster than the limit, then polite", func(t *testing.T) {
		m := mesh.For(t)
		c := m.Dial(0, "eager")
		for i := range 300 { // burst 200: the rest is refused, not punished
			c.Send(&messages.Envelope{Type: messages.TypePing, ID: fmt.Sprint(i)})
		}
		// The burst is served...
		pongs, limited := 0, 0
		count := func(e *messages.Envelope) {
			switch {
			case e.Type == messages.TypePong && !strings.HasPrefix(e.ID, "again-"):
				pongs++
			case e.Type == messages.TypeError && e.Code == messages.CodeRateLimited:
				limited++
			case e.Type != messages.TypePong:
				t.Fatalf("got %s", describe(e))
			}
		}
		for pongs < 200 {
			count(c.Next())
		}
		healthy(t, mesh, alice, bob, call, 3)
		// ...and once the bucket refills, the connection is served again. The
		// reader answers in order, so everything before that pong is the
		// flood's answer.
		natstest.WaitFor(t, "served again after the flood", func() error {
			id := "again-" + messages.NewID()
			c.Send(&messages.Envelope{Type: messages.TypePing, ID: id})
			for {
				e := c.Next()
				switch {
				case e.Type == messages.TypePong && e.ID == id:
					return nil
				case e.ID == id:
					return fmt.Errorf("still limited: %s", describe(e))
				}
				count(e)
			}
		})
		if pongs >= 300 {
			t.Fatalf("all %d pings over a burst of 200 were served (%d rate_limited)", pongs, limited)
		}
	})
	t.Run("invites to 1000 random users", func(t *testing.T) {
		m := mesh.For(t)
		before := m.RouterRequests(messages.OpInvite)
		a := m.attack(1, "spammer")
		a.flood(1000, func(i int) []byte {
			return []byte(fmt.Sprintf(`{"type":"invite","id":"%d","to":"victim-%d"}`, i, i))
		})
		// Only the invite burst (and what the rate refilled meanwhile) reached a router.
		healthy(t, mesh, alice, bob, call, 4)
		if n := m.RouterRequests(messages.OpInvite) - before; n > 20 {
			t.Fatalf("%d of 1000 spam invites reached the routers", n)
		}
	})
	t.Run("frozen client", func(t *testing.T) {
		m := mesh.For(t)
		talker := m.Dial(1, "talker")
		frozen := m.rawCallee(t, 0, "frozen", talker) // in a call with talker, then never reads again
		// talker sends what the frozen client will never read: 30 KiB
		// signals, within the message rate, until the gateway cuts it off.
		data := json.RawMessage(`"` + strings.Repeat("s", 30<<10) + `"`)
		for range 190 {
			talker.Send(&messages.Envelope{Type: messages.TypeSignal, Call: frozen, Data: data})
		}
		// Everyone else is served meanwhile...
		healthy(t, mesh, alice, bob, call, 5)
		// ...and the frozen client is closed (send queue overflow or write
		// timeout): after the grace, talker hears it is gone.
		talker.ExpectEnded(frozen, messages.ReasonDisconnected)
	})
}
