package meshtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// presence opens the mesh's presence bucket, to look at it (and, for
// tests of its repair, to damage it) as the test.
func (m *Mesh) presence() *presence.Registry {
	m.t.Helper()
	js, err := jetstream.New(m.nc)
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	reg, err := presence.Bind(ctx, js, m.names)
	if err != nil {
		m.t.Fatal(err)
	}
	return reg
}

// connsOf lists user's connections in presence, failing the test if
// presence cannot be read.
func connsOf(t *testing.T, reg *presence.Registry, user string) map[string]presence.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	conns, err := reg.Conns(ctx, user, kvutil.Leader)
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// dialOutcome is how one connect ended: welcomed, or closed with a code.
type dialOutcome struct {
	c    *Client
	code websocket.StatusCode
	err  error
}

func (m *Mesh) dialOutcome(g int, token string) dialOutcome {
	c, _, err := m.DialRaw(g, token, "")
	if err != nil {
		return dialOutcome{code: websocket.CloseStatus(err), err: err}
	}
	return dialOutcome{c: c}
}

// Simultaneous connects of one user over two gateways are counted in the
// same compare-and-set as their registration: exactly the limit is
// welcomed, every other connect is refused with 4004 (not 1011), and
// presence lists exactly the welcomed connections.
func TestConnLimitHoldsForSimultaneousConnects(t *testing.T) {
	const limit, connects = 10, 100
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.MaxConnsPerUser = limit }})
	token := m.Token("mob")
	outcomes := make([]dialOutcome, connects)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range connects {
		wg.Go(func() {
			<-start
			outcomes[i] = m.dialOutcome(i%2, token)
		})
	}
	close(start)
	wg.Wait()

	welcomed := map[string]bool{}
	for _, o := range outcomes {
		switch {
		case o.c != nil:
			welcomed[o.c.Conn] = true
		case o.code != messages.CloseTooManyConns:
			t.Errorf("a connect was refused with %v, want close %d", o.err, messages.CloseTooManyConns)
		}
	}
	if len(welcomed) != limit {
		t.Fatalf("%d of %d simultaneous connects welcomed, want the limit %d", len(welcomed), connects, limit)
	}
	conns := connsOf(t, m.presence(), "mob")
	if len(conns) != limit {
		t.Fatalf("presence lists %d connections, want %d: %v", len(conns), limit, conns)
	}
	for id := range conns {
		if !welcomed[id] {
			t.Errorf("presence lists %s, which was never welcomed", id)
		}
	}
}

// Many clients connecting and leaving with bye as one user, over two
// gateways, leave nothing behind: afterwards the user is offline (an
// invite ends with offline, not ringing) and can connect again. While it
// lasts, a connect is only ever refused for the limit (4004).
func TestConnectByeChurnLeavesNoPresence(t *testing.T) {
	const workers, churnFor = 40, 3 * time.Second
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.MaxConnsPerUser = 10 }})
	token := m.Token("churn")
	var welcomed, limited atomic.Int64
	errs := make(chan error, workers)
	deadline := time.Now().Add(churnFor)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				o := m.dialOutcome(i%2, token)
				if o.c == nil {
					if o.code != messages.CloseTooManyConns {
						errs <- fmt.Errorf("connect refused with %v, want close %d", o.err, messages.CloseTooManyConns)
						return
					}
					limited.Add(1)
					continue
				}
				welcomed.Add(1)
				if err := o.c.Write(&messages.Envelope{Type: messages.TypeBye}); err != nil {
					errs <- err
					return
				}
				select {
				case <-o.c.closed:
				case <-time.After(Wait):
					errs <- fmt.Errorf("%s: still open %v after bye", o.c, Wait)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d connects welcomed and left with bye, %d refused for the limit", welcomed.Load(), limited.Load())
	if welcomed.Load() == 0 {
		t.Fatal("no connect was welcomed")
	}

	reg := m.presence()
	natstest.WaitFor(t, "churn's presence to empty", func() error {
		if conns := connsOf(t, reg, "churn"); len(conns) > 0 {
			return fmt.Errorf("%d connections left in presence: %v", len(conns), conns)
		}
		return nil
	})
	caller := m.Dial(0, "caller")
	call := caller.Invite("churn")
	caller.ExpectEnded(call, messages.ReasonOffline)
	m.Dial(1, "churn")
}

// A presence entry that names a live gateway but no socket of it (however
// it got there) is repaired by that gateway: the user it locked out can
// connect up to the limit again, and an invite that rang it ends, so the
// next invite finds the user offline.
func TestPhantomPresenceIsRepaired(t *testing.T) {
	const limit = 3
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.MaxConnsPerUser = limit }})
	reg := m.presence()
	phantom := func(user string) {
		t.Helper()
		at := presence.Conn{Gateway: m.Gateways[0].Server.ID(), Holder: messages.NewID()}
		if err := reg.Register(context.Background(), user, messages.NewID(), at); err != nil {
			t.Fatal(err)
		}
	}

	// Locked out: every place is taken by a phantom on gateway 0. The user
	// keeps trying, and gets every place back.
	for range limit {
		phantom("pat")
	}
	token := m.Token("pat")
	welcomed := map[string]bool{}
	for i := range limit {
		natstest.WaitFor(t, fmt.Sprintf("pat's connection %d welcomed", i+1), func() error {
			o := m.dialOutcome(i%2, token)
			if o.c == nil {
				if o.code != messages.CloseTooManyConns {
					t.Fatalf("refused with %v, want close %d", o.err, messages.CloseTooManyConns)
				}
				return o.err
			}
			welcomed[o.c.Conn] = true
			return nil
		})
	}
	conns := connsOf(t, reg, "pat")
	for id := range conns {
		if !welcomed[id] {
			t.Errorf("presence still lists %s, which no client holds", id)
		}
	}
	if len(conns) != limit {
		t.Fatalf("presence lists %d connections, want %d: %v", len(conns), limit, conns)
	}

	// An invite to a user whose only connection is a phantom rings it,
	// then ends once the gateway has removed it; then the user is offline.
	phantom("rex")
	quinn := m.Dial(1, "quinn")
	call := quinn.Invite("rex")
	quinn.Expect(messages.TypeRinging)
	quinn.ExpectEnded(call, messages.ReasonDisconnected)
	if conns := connsOf(t, reg, "rex"); len(conns) != 0 {
		t.Fatalf("rex's phantom is still in presence: %v", conns)
	}
	call = quinn.Invite("rex")
	quinn.ExpectEnded(call, messages.ReasonOffline)
}
