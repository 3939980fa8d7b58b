//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/messages"
)

// client is one user's device: a real WebSocket client that survives its
// connection (it reconnects, with or without resume) and keeps the
// books the table is made from: every frame, the calls it believes it is
// party to, the signals it sent and the server acknowledged, the signals
// it received.
type client struct {
	t    testing.TB
	m    *mesh
	user string
	tok  string
	// quiet stops the traffic generator from sending on this client's
	// behalf (set while it is away on purpose).
	quiet atomic.Bool

	mu      sync.Mutex
	ws      *websocket.Conn // current connection; nil while away
	gen     int             // connection generation, +1 per dial
	gw      int             // gateway of the current connection
	conn    string          // connection id from the newest welcome
	resume  string          // newest resume token
	welcome messages.Welcome
	closes  map[int]error // generation → why its reading stopped
	inbox   []*messages.Envelope
	notify  chan struct{} // closed and replaced on every change

	live       map[string]bool     // calls this client is party to, as far as it knows
	ended      map[string][]string // call → reasons of every ended received
	endedAt    map[string]time.Time
	doubleBook int // incoming or accepted while party to another live call

	// The signal books are by call, or for room signal by roomSigKey.
	nextN   map[string]int          // call → n of the last signal written
	acked   map[string]map[int]bool // call → n's the server acknowledged
	pending map[string]sigRef       // signal id → what it was
	recv    map[string][]int        // call → n's received, in arrival order

	roomBooks // what the client knows and noticed of its rooms (roomclient_test.go)
}

// sigRef is a signal written and not yet acknowledged.
type sigRef struct {
	call string
	n    int
}

// newClient is a device of user, not yet connected.
func newClient(t testing.TB, m *mesh, user string) *client {
	c := &client{
		t: t, m: m, user: user, tok: token(t, user),
		closes: map[int]error{}, notify: make(chan struct{}),
		live: map[string]bool{}, ended: map[string][]string{}, endedAt: map[string]time.Time{},
		nextN: map[string]int{}, acked: map[string]map[int]bool{}, pending: map[string]sigRef{},
		recv: map[string][]int{}, roomBooks: newRoomBooks(),
	}
	m.mu.Lock()
	m.clients = append(m.clients, c)
	m.mu.Unlock()
	t.Cleanup(c.drop)
	return c
}

func (c *client) String() string { return c.user }

// changed wakes every waiter; call with mu held.
func (c *client) changed() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// dial connects to gateway gw, with the newest resume token when resume is
// set, and returns the welcome.
func (c *client) dial(gw int, resume bool) (messages.Welcome, error) {
	u := c.m.gateways[gw].wsURL() + "?access_token=" + url.QueryEscape(c.tok)
	c.mu.Lock()
	if resume {
		u += "&resume=" + url.QueryEscape(c.resume)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return messages.Welcome{}, fmt.Errorf("%s: dial gateway%d: %w", c, gw, err)
	}
	ws.SetReadLimit(1 << 20)
	_, b, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return messages.Welcome{}, fmt.Errorf("%s: no welcome from gateway%d: %w", c, gw, err)
	}
	var env messages.Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Type != messages.TypeWelcome {
		ws.CloseNow()
		return messages.Welcome{}, fmt.Errorf("%s: first frame %q is not a welcome", c, b)
	}
	var w messages.Welcome
	if err := json.Unmarshal(env.Data, &w); err != nil {
		ws.CloseNow()
		return messages.Welcome{}, fmt.Errorf("%s: welcome: %w", c, err)
	}
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.ws, c.gw, c.conn, c.resume, c.welcome = ws, gw, w.Conn, w.Resume, w
	if !w.Resumed {
		// A fresh session is party to no call.
		for call := range c.live {
			delete(c.live, call)
		}
	}
	c.welcomeRooms(w)
	c.changed()
	c.mu.Unlock()
	go c.read(ws, gen)
	return w, nil
}

// mustDial is dial, failing the test on error.
func (c *client) mustDial(gw int) {
	c.t.Helper()
	if _, err := c.dial(gw, false); err != nil {
		c.t.Fatal(err)
	}
}

// read is the reader of connection generation gen.
func (c *client) read(ws *websocket.Conn, gen int) {
	for {
		_, b, err := ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.closes[gen] = err
			if c.gen == gen {
				c.ws = nil
				clear(c.pending) // written to a dead connection: not owed, no ack coming
			}
			c.changed()
			c.mu.Unlock()
			return
		}
		var env messages.Envelope
		if err := json.Unmarshal(b, &env); err != nil {
			c.t.Errorf("%s: undecodable frame %q: %v", c, b, err)
			continue
		}
		c.handle(&env)
	}
}

// handle books one frame.
func (c *client) handle(e *messages.Envelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.changed()
	switch e.Type {
	case messages.TypeSignal:
		var d struct{ N int }
		if err := json.Unmarshal(e.Data, &d); err != nil || d.N == 0 {
			c.t.Errorf("%s: signal with data %s", c, e.Data)
			return
		}
		key := e.Call
		if e.Room != "" {
			key = roomSigKey(e.Room, e.From, c.user)
		}
		c.recv[key] = append(c.recv[key], d.N)
		return
	case messages.TypeAck, messages.TypeError:
		if ref, ok := c.pending[e.ID]; ok {
			delete(c.pending, e.ID)
			if e.Type == messages.TypeAck {
				if c.acked[ref.call] == nil {
					c.acked[ref.call] = map[int]bool{}
				}
				c.acked[ref.call][ref.n] = true
			} else if isRoomSigKey(ref.call) {
				c.sigRefused[ref.call]++
			}
			return
		}
		c.roomAnswer(e)
	case messages.TypeIncoming:
		if len(c.live) > 0 && !c.live[e.Call] {
			c.t.Errorf("%s: DOUBLE BOOKING: incoming %s while party to %v", c, e.Call, keys(c.live))
			c.doubleBook++
		}
		c.live[e.Call] = true
	case messages.TypeAccepted:
		for call := range c.live {
			if call != e.Call {
				c.t.Errorf("%s: DOUBLE BOOKING: accepted %s while party to %s", c, e.Call, call)
				c.doubleBook++
			}
		}
		c.live[e.Call] = true
	case messages.TypeEnded:
		c.ended[e.Call] = append(c.ended[e.Call], e.Reason)
		if _, ok := c.endedAt[e.Call]; !ok {
			c.endedAt[e.Call] = time.Now()
		}
		delete(c.live, e.Call)
	case messages.TypeJoined, messages.TypeMemberJoined, messages.TypeMemberLeft:
		if !c.roomEvent(e) {
			return
		}
	}
	c.inbox = append(c.inbox, e)
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// await returns the first unconsumed frame matching match, waiting up to d.
func (c *client) await(d time.Duration, what string, match func(*messages.Envelope) bool) (*messages.Envelope, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		for i, e := range c.inbox {
			if match(e) {
				c.inbox = append(c.inbox[:i:i], c.inbox[i+1:]...)
				c.mu.Unlock()
				return e, nil
			}
		}
		notify := c.notify
		c.mu.Unlock()
		select {
		case <-notify:
		case <-timer.C:
			return nil, fmt.Errorf("%s: no %s within %v (unconsumed: %s)", c, what, d, c.describeInbox())
		}
	}
}

func (c *client) describeInbox() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []string
	for _, e := range c.inbox {
		s = append(s, describe(e))
	}
	return strings.Join(s, ", ")
}

// describe is a frame in short.
func describe(e *messages.Envelope) string {
	s := e.Type
	for _, f := range [][2]string{{"id", e.ID}, {"call", e.Call}, {"reason", e.Reason}, {"code", e.Code}} {
		if f[1] != "" {
			s += " " + f[0] + "=" + f[1]
		}
	}
	return "{" + s + "}"
}

// awaitCall waits for a frame of type typ about call.
func (c *client) awaitCall(d time.Duration, typ, call string) (*messages.Envelope, error) {
	return c.await(d, typ+" "+call, func(e *messages.Envelope) bool { return e.Type == typ && e.Call == call })
}

// awaitEnded waits for ended about call and returns its reason.
func (c *client) awaitEnded(d time.Duration, call string) (string, error) {
	e, err := c.awaitCall(d, messages.TypeEnded, call)
	if err != nil {
		return "", err
	}
	return e.Reason, nil
}

// send writes env on the current connection.
func (c *client) send(env *messages.Envelope) error {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return fmt.Errorf("%s: not connected", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, messages.Encode(env))
}

// request sends a request and waits for its ack (nil) or error.
func (c *client) request(env *messages.Envelope, d time.Duration) (*messages.Envelope, error) {
	env.ID = env.Type + "-" + messages.NewID()[:10]
	if err := c.send(env); err != nil {
		return nil, err
	}
	r, err := c.await(d, "ack "+env.ID, func(e *messages.Envelope) bool {
		return (e.Type == messages.TypeAck || e.Type == messages.TypeError) && e.ID == env.ID
	})
	if err != nil {
		return nil, err
	}
	if r.Type == messages.TypeError {
		return r, fmt.Errorf("%s: %s refused: %s %s", c, env.Type, r.Code, r.Message)
	}
	return r, nil
}

// errorCode is the code of a refusal returned by request, or "".
func errorCode(r *messages.Envelope) string {
	if r != nil && r.Type == messages.TypeError {
		return r.Code
	}
	return ""
}

// invite invites to and returns the call id from the ack (and the error
// envelope when refused).
func (c *client) invite(to string) (string, *messages.Envelope, error) {
	r, err := c.request(&messages.Envelope{Type: messages.TypeInvite, To: to, Data: json.RawMessage(`{"media":"audio"}`)}, 10*time.Second)
	if err != nil {
		return "", r, err
	}
	c.mu.Lock()
	if _, gone := c.ended[r.Call]; !gone {
		c.live[r.Call] = true
	}
	c.mu.Unlock()
	return r.Call, r, nil
}

// act sends accept, reject or hangup for call and waits for its ack.
func (c *client) act(typ, call string) error {
	if typ != messages.TypeAccept {
		c.mu.Lock()
		delete(c.live, call) // over for us once sent: a new incoming may follow the ack
		c.mu.Unlock()
	}
	_, err := c.request(&messages.Envelope{Type: typ, Call: call}, 10*time.Second)
	return err
}

// signal writes the next numbered signal of call, with an id so that the
// server acknowledges it. A write that fails (connection gone) is not an
// error: only acknowledged signals are owed to the peer.
func (c *client) signal(call string) {
	c.writeSignal(call, fmt.Sprintf("sig-%.8s", call), &messages.Envelope{Call: call})
}

// writeSignal writes env as the next numbered signal under key (a call, or
// a roomSigKey): data {"n": its number}, id idPrefix-n.
func (c *client) writeSignal(key, idPrefix string, env *messages.Envelope) {
	c.mu.Lock()
	ws := c.ws
	if ws == nil {
		c.mu.Unlock()
		return
	}
	c.nextN[key]++
	n := c.nextN[key]
	env.Type, env.ID, env.Data = messages.TypeSignal, fmt.Sprintf("%s-%d", idPrefix, n), json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))
	c.pending[env.ID] = sigRef{key, n}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = ws.Write(ctx, websocket.MessageText, messages.Encode(env))
}

// drop closes the TCP connection without a close frame, as a lost network
// would, and forgets it.
func (c *client) drop() {
	c.mu.Lock()
	ws := c.ws
	c.ws = nil
	clear(c.pending)
	c.mu.Unlock()
	if ws != nil {
		ws.CloseNow()
	}
}

// connected reports whether the client has a connection.
func (c *client) connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws != nil
}

// closeStatus reports whether connection generation gen has ended and
// with which close code (-1: without a close frame).
func (c *client) closeStatus(gen int) (websocket.StatusCode, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err, ok := c.closes[gen]
	if !ok {
		return 0, false
	}
	return websocket.CloseStatus(err), true
}

// generation is the current connection generation.
func (c *client) generation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// unacked is how many signals c wrote that are neither acknowledged nor
// refused yet.
func (c *client) unacked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// received is how many signals of call have arrived.
func (c *client) received(call string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recv[call])
}

// ackedSignals is how many signals of call the server acknowledged.
func (c *client) ackedSignals(call string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acked[call])
}

// lostFrom counts the signals of call that from's server acknowledged but
// that c never received, plus those c received out of order (a number
// lower than one before it; duplicates are ignored).
func (c *client) lostFrom(from *client, call string) (lost int, detail string) {
	from.mu.Lock()
	acked := make(map[int]bool, len(from.acked[call]))
	for n := range from.acked[call] {
		acked[n] = true
	}
	from.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[int]bool{}
	max := 0
	var missing, disorder []int
	for _, n := range c.recv[call] {
		if seen[n] {
			continue
		}
		seen[n] = true
		if n < max {
			disorder = append(disorder, n)
		}
		if n > max {
			max = n
		}
	}
	for n := range acked {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	if len(missing)+len(disorder) > 0 {
		detail = fmt.Sprintf("%s→%s call %s: acked %d, received %d; missing %v, out of order %v", from, c, call, len(acked), len(seen), missing, disorder)
	}
	return len(missing) + len(disorder), detail
}

// endedReasons is every ended reason c received for call.
func (c *client) endedReasons(call string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ended[call]...)
}
