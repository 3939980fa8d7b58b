package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// Wait bounds how long a client waits for an expected frame. It is a
// deadline for failing, never a timing being asserted.
const Wait = natstest.Wait

// Client is a real WebSocket client of a gateway.
type Client struct {
	t       testing.TB
	WS      *websocket.Conn
	User    string
	Conn    string
	Welcome messages.Welcome
	frames  chan *messages.Envelope
	closed  chan struct{}
	err     error // why reading stopped; set before closed is closed
}

// Dial connects user to gateway g and reads its welcome.
func (m *Mesh) Dial(g int, user string) *Client {
	m.t.Helper()
	c, resp, err := m.DialRaw(g, m.Token(user), "")
	if err != nil {
		m.t.Fatalf("dial %q: %v (%v)", user, err, resp)
	}
	return c
}

// DialRaw connects with token (in the access_token query, or none when
// empty) and extra query. It returns the HTTP response when the upgrade is
// refused, and the close error when the connection is closed before its
// welcome.
func (m *Mesh) DialRaw(g int, token, query string) (*Client, *http.Response, error) {
	m.t.Helper()
	u := m.Gateways[g].URL + "?" + query
	if token != "" {
		u += "&access_token=" + url.QueryEscape(token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 20)
	c := &Client{t: m.t, WS: ws, frames: make(chan *messages.Envelope, 1024), closed: make(chan struct{})}
	go c.read()
	m.t.Cleanup(func() { ws.CloseNow() })
	var w *messages.Envelope
	select {
	case w = <-c.frames:
	case <-c.closed: // refused after the upgrade: the close is the answer
		return nil, nil, c.err
	case <-time.After(Wait):
		return nil, nil, fmt.Errorf("no welcome within %v", Wait)
	}
	if w.Type != messages.TypeWelcome {
		return nil, nil, fmt.Errorf("first frame is %s, not welcome", describe(w))
	}
	if err := json.Unmarshal(w.Data, &c.Welcome); err != nil {
		return nil, nil, err
	}
	c.User, c.Conn = c.Welcome.User, c.Welcome.Conn
	return c, nil, nil
}

func (c *Client) read() {
	defer close(c.closed)
	for {
		_, b, err := c.WS.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		var e messages.Envelope
		if err := json.Unmarshal(b, &e); err != nil {
			c.err = fmt.Errorf("undecodable frame %q: %w", b, err)
			return
		}
		c.frames <- &e
	}
}

func (c *Client) String() string { return fmt.Sprintf("%s/%.6s", c.User, c.Conn) }

// Send writes env as one frame.
func (c *Client) Send(env *messages.Envelope) {
	c.t.Helper()
	c.SendRaw(messages.Encode(env))
}

// SendRaw writes one text frame as is.
func (c *Client) SendRaw(frame []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := c.WS.Write(ctx, websocket.MessageText, frame); err != nil {
		c.t.Fatalf("%s: write: %v", c, err)
	}
}

// Next returns the next frame, failing the test if none comes.
func (c *Client) Next() *messages.Envelope {
	c.t.Helper()
	select {
	case e := <-c.frames:
		return e
	case <-c.closed:
		select {
		case e := <-c.frames:
			return e
		default:
		}
		c.t.Fatalf("%s: connection closed while waiting for a frame: %v", c, c.err)
	case <-time.After(Wait):
		c.t.Fatalf("%s: no frame within %v", c, Wait)
	}
	return nil
}

// Expect returns the next frame and fails unless it has type typ.
func (c *Client) Expect(typ string) *messages.Envelope {
	c.t.Helper()
	e := c.Next()
	if e.Type != typ {
		c.t.Fatalf("%s: expected %s, got %s", c, typ, describe(e))
	}
	return e
}

// ExpectEnded expects ended{call, reason}.
func (c *Client) ExpectEnded(call, reason string) {
	c.t.Helper()
	e := c.Expect(messages.TypeEnded)
	if e.Call != call || e.Reason != reason {
		c.t.Fatalf("%s: expected ended{%s, %s}, got %s", c, call, reason, describe(e))
	}
}

// ExpectError expects error{id, code}.
func (c *Client) ExpectError(id, code string) *messages.Envelope {
	c.t.Helper()
	e := c.Expect(messages.TypeError)
	if e.ID != id || e.Code != code {
		c.t.Fatalf("%s: expected error{%s, %s}, got %s", c, id, code, describe(e))
	}
	return e
}

// ExpectAck expects ack{id} and returns it.
func (c *Client) ExpectAck(id string) *messages.Envelope {
	c.t.Helper()
	e := c.Expect(messages.TypeAck)
	if e.ID != id {
		c.t.Fatalf("%s: expected ack{%s}, got %s", c, id, describe(e))
	}
	return e
}

// ExpectClosed waits until the server closes the connection and returns
// the close code.
func (c *Client) ExpectClosed() websocket.StatusCode {
	c.t.Helper()
	for {
		select {
		case e := <-c.frames:
			c.t.Logf("%s: frame before close: %s", c, describe(e))
		case <-c.closed:
			return websocket.CloseStatus(c.err)
		case <-time.After(Wait):
			c.t.Fatalf("%s: still open after %v", c, Wait)
		}
	}
}

// Invite sends invite{to} and returns the call id from the ack.
func (c *Client) Invite(to string) string {
	c.t.Helper()
	id := "inv-" + messages.NewID()[:8]
	c.Send(&messages.Envelope{Type: messages.TypeInvite, ID: id, To: to})
	return c.ExpectAck(id).Call
}

// Do sends a request of type typ for call and expects its ack.
func (c *Client) Do(typ, call string) {
	c.t.Helper()
	id := typ + "-" + messages.NewID()[:8]
	c.Send(&messages.Envelope{Type: typ, ID: id, Call: call})
	c.ExpectAck(id)
}

// Drop closes the socket without bye, as a lost network would.
func (c *Client) Drop() { c.WS.CloseNow() }

// Resume connects old's user to gateway g with old's resume token.
func (m *Mesh) Resume(g int, old *Client) *Client {
	m.t.Helper()
	c, resp, err := m.DialRaw(g, m.Token(old.User), "resume="+url.QueryEscape(old.Welcome.Resume))
	if err != nil {
		m.t.Fatalf("resume %s: %v (%v)", old, err, resp)
	}
	return c
}

// Signal sends a signal with data {"n":n} and expects its ack.
func (c *Client) Signal(call string, n int) {
	c.t.Helper()
	id := fmt.Sprintf("sig-%d", n)
	c.Send(&messages.Envelope{Type: messages.TypeSignal, ID: id, Call: call, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
	c.ExpectAck(id)
}

// ExpectSignal expects the signal {"n":n} of call.
func (c *Client) ExpectSignal(call string, n int) {
	c.t.Helper()
	e := c.Expect(messages.TypeSignal)
	if want := fmt.Sprintf(`{"n":%d}`, n); e.Call != call || string(e.Data) != want {
		c.t.Fatalf("%s: expected signal %s of %s, got %s", c, want, call, describe(e))
	}
}

// Establish has caller invite callee and callee accept, and returns the call
// once both sides have their accepted.
func Establish(caller, callee *Client) string {
	caller.t.Helper()
	call := caller.Invite(callee.User)
	caller.Expect(messages.TypeRinging)
	if in := callee.Expect(messages.TypeIncoming); in.Call != call {
		caller.t.Fatalf("%s: incoming for %s, invited %s", callee, in.Call, call)
	}
	callee.Do(messages.TypeAccept, call)
	callee.Expect(messages.TypeAccepted)
	caller.Expect(messages.TypeAccepted)
	return call
}
