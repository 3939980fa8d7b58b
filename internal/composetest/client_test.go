//go:build compose

package composetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/messages"
)

// client is one user's device. It reaches the gateways only through the
// load balancer, as a browser on the demo page does, and follows its
// session from gateway to gateway with the resume token of its latest
// welcome.
type client struct {
	t     *testing.T
	s     *stack
	user  string
	token string

	// Owned by the test goroutine.
	ws       *websocket.Conn
	gen      int    // generation of the current connection: +1 per dial
	upstream string // the gateway (ip:port) the load balancer chose for it
	welcome  messages.Welcome
	pending  []*messages.Envelope // received, not yet awaited
	closes   map[int]error        // generation → why its reading stopped
	seen     map[string]bool      // ids of the signals received, over every connection
	ids      int

	events chan event // from every connection's reader
}

// event is a frame of connection gen, or (env nil) the end of its reading.
type event struct {
	gen int
	env *messages.Envelope
	err error
}

// connect signs user in through the demo's sign-in and connects.
func connect(s *stack, user string) *client {
	s.t.Helper()
	return connectWith(s, user, s.devToken(user))
}

// connectWith connects user with token, trying until wait has passed.
func connectWith(s *stack, user, token string) *client {
	s.t.Helper()
	c := &client{t: s.t, s: s, user: user, token: token, closes: map[int]error{}, seen: map[string]bool{},
		events: make(chan event, 1024)}
	waitFor(s.t, wait, user+" connected", func() error { return logged(s.t, c.dial(false)) })
	s.t.Cleanup(func() {
		if c.ws != nil {
			c.ws.CloseNow()
		}
	})
	return c
}

func (c *client) String() string { return fmt.Sprintf("%s@%s", c.user, c.upstream) }

// dial makes one connection through the load balancer, resuming the
// session of the latest welcome when resume is set, and reads its welcome.
func (c *client) dial(resume bool) error {
	u := fmt.Sprintf("ws://127.0.0.1:%d/ws?access_token=%s", c.s.lbPort, url.QueryEscape(c.token))
	if resume {
		u += "&resume=" + url.QueryEscape(c.welcome.Resume)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("%s: dial: %w (HTTP %d)", c.user, err, resp.StatusCode)
		}
		return fmt.Errorf("%s: dial: %w", c.user, err)
	}
	ws.SetReadLimit(1 << 20)
	_, b, err := ws.Read(ctx)
	if err != nil {
		ws.CloseNow()
		return fmt.Errorf("%s: no welcome: %w", c.user, err)
	}
	var env messages.Envelope
	var w messages.Welcome
	if err := json.Unmarshal(b, &env); err != nil || env.Type != messages.TypeWelcome {
		ws.CloseNow()
		return fmt.Errorf("%s: first frame %q is not a welcome", c.user, b)
	}
	if err := json.Unmarshal(env.Data, &w); err != nil {
		ws.CloseNow()
		return fmt.Errorf("%s: welcome: %w", c.user, err)
	}
	c.gen++
	c.ws, c.welcome, c.upstream = ws, w, resp.Header.Get("X-Callmesh-Upstream")
	go c.read(c.gen, ws)
	if c.upstream == "" {
		c.t.Fatalf("%s: the load balancer did not say which gateway answered (X-Callmesh-Upstream)", c.user)
	}
	return nil
}

func (c *client) read(gen int, ws *websocket.Conn) {
	for {
		_, b, err := ws.Read(context.Background())
		if err != nil {
			c.events <- event{gen: gen, err: err}
			return
		}
		var e messages.Envelope
		if err := json.Unmarshal(b, &e); err != nil {
			c.events <- event{gen: gen, err: fmt.Errorf("undecodable frame %q: %w", b, err)}
			return
		}
		c.events <- event{gen: gen, env: &e}
	}
}

// resume connects again with the resume token of the latest welcome,
// trying until it succeeds or wait passes, and checks that the session
// came back with call in it.
func (c *client) resume(call string) {
	c.t.Helper()
	from := c.upstream
	waitFor(c.t, wait, c.user+" resumed", func() error { return logged(c.t, c.dial(true)) })
	if !c.welcome.Resumed {
		c.t.Fatalf("%s: welcome after a resume has resumed false", c)
	}
	for _, ci := range c.welcome.Calls {
		if ci.Call == call && ci.State == "accepted" {
			c.t.Logf("%s resumed (from %s) with call %s", c, from, call)
			return
		}
	}
	c.t.Fatalf("%s: resumed without call %s in accepted: %+v", c, call, c.welcome.Calls)
}

// take handles one event: a frame goes to pending (a signal seen before,
// replayed after a resume, is dropped as a client must), the end of a
// connection's reading is noted.
func (c *client) take(ev event) {
	if ev.env == nil {
		c.closes[ev.gen] = ev.err
		return
	}
	e := ev.env
	if e.Type == messages.TypeSignal && e.ID != "" {
		if c.seen[e.ID] {
			if ev.gen == c.gen && !c.welcome.Resumed {
				c.t.Errorf("%s: signal %s received twice on one connection", c, e.ID)
			}
			return
		}
		c.seen[e.ID] = true
	}
	c.pending = append(c.pending, e)
}

// await returns the first frame received that matches, waiting up to
// limit. It fails the test if the current connection ends meanwhile.
func (c *client) await(what string, limit time.Duration, match func(*messages.Envelope) bool) *messages.Envelope {
	c.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		for i, e := range c.pending {
			if match(e) {
				c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
				return e
			}
		}
		if err, closed := c.closes[c.gen]; closed {
			c.t.Fatalf("%s: connection closed (%v) while waiting for %s; received %s", c, err, what, describe(c.pending))
		}
		select {
		case ev := <-c.events:
			c.take(ev)
		case <-deadline.C:
			c.t.Fatalf("%s: no %s within %v; received %s", c, what, limit, describe(c.pending))
		}
	}
}

// awaitClosed waits until connection gen has ended and returns why.
func (c *client) awaitClosed(gen int, limit time.Duration) error {
	c.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		if err, closed := c.closes[gen]; closed {
			return err
		}
		select {
		case ev := <-c.events:
			c.take(ev)
		case <-deadline.C:
			c.t.Fatalf("%s: connection %d still open after %v", c, gen, limit)
		}
	}
}

// send writes env as one frame on the current connection.
func (c *client) send(env *messages.Envelope) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, messages.Encode(env)); err != nil {
		c.t.Fatalf("%s: write %s: %v", c, env.Type, err)
	}
}

// request sends a request with a fresh id and returns its ack, or the
// error answering it.
func (c *client) request(env *messages.Envelope) (ack, refused *messages.Envelope) {
	c.t.Helper()
	c.ids++
	env.ID = fmt.Sprintf("%s-%s-%d", c.user, env.Type, c.ids)
	c.send(env)
	reply := c.await("the answer to "+env.ID, wait, func(e *messages.Envelope) bool {
		return (e.Type == messages.TypeAck || e.Type == messages.TypeError) && e.ID == env.ID
	})
	if reply.Type == messages.TypeError {
		return nil, reply
	}
	return reply, nil
}

// do sends a request that must be acknowledged.
func (c *client) do(env *messages.Envelope) *messages.Envelope {
	c.t.Helper()
	ack, refused := c.request(env)
	if refused != nil {
		c.t.Fatalf("%s: %s refused: %s %s", c, env.Type, refused.Code, refused.Message)
	}
	return ack
}

// expect waits for a frame of type typ about call.
func (c *client) expect(typ, call string) *messages.Envelope {
	c.t.Helper()
	return c.await(typ+" of "+call, wait, func(e *messages.Envelope) bool { return e.Type == typ && e.Call == call })
}

// signal sends signal {"n":n} of call; the server acknowledges it once it
// has taken it.
func (c *client) signal(call string, n int) {
	c.t.Helper()
	c.do(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
}

// expectSignal waits for the signal {"n":n} of call, from its peer.
func (c *client) expectSignal(call string, n int) {
	c.t.Helper()
	want := fmt.Sprintf(`{"n":%d}`, n)
	c.await("signal "+want+" of "+call, wait, func(e *messages.Envelope) bool {
		return e.Type == messages.TypeSignal && e.Call == call && string(e.Data) == want
	})
}

// bye ends the session at once (no resume grace) and closes the socket.
func (c *client) bye() {
	c.t.Helper()
	c.send(&messages.Envelope{Type: messages.TypeBye})
	_ = c.ws.Close(websocket.StatusNormalClosure, "bye")
	c.ws = nil
}

// logged logs err, an attempt that failed, and returns it.
func logged(t *testing.T, err error) error {
	if err != nil {
		t.Logf("%v; trying again", err)
	}
	return err
}

// closeCode is the WebSocket close code of a connection's end, -1 if it
// ended without a close frame.
func closeCode(err error) websocket.StatusCode { return websocket.CloseStatus(err) }

func describe(es []*messages.Envelope) string {
	if len(es) == 0 {
		return "nothing"
	}
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString(", ")
		}
		b.Write(messages.Encode(e))
	}
	return b.String()
}
