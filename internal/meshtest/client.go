package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
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
	// signals are the ids of the signals Next returned, carried over by
	// Resume, which drops repeats as a client must; owned by the test.
	signals map[string]bool
	resumed bool
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
	return m.DialHeader(g, token, query, nil)
}

// DialHeader is DialRaw with extra request headers (such as Origin).
func (m *Mesh) DialHeader(g int, token, query string, h http.Header) (*Client, *http.Response, error) {
	m.t.Helper()
	u := m.Gateways[g].URL + "?" + query
	if token != "" {
		u += "&access_token=" + url.QueryEscape(token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 20)
	c := &Client{t: m.t, WS: ws, frames: make(chan *messages.Envelope, 1024), closed: make(chan struct{}), signals: map[string]bool{}}
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

// Write writes env as one frame and returns the error, for goroutines
// other than the test's, which must not call Fatal.
func (c *Client) Write(env *messages.Envelope) error {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := c.WS.Write(ctx, websocket.MessageText, messages.Encode(env)); err != nil {
		return fmt.Errorf("%s: write %s: %w", c, env.Type, err)
	}
	return nil
}

// SendAtOnce has every client of cs send env at the same moment, each from
// a goroutine of its own, for races between them; it returns once every
// frame is written, failing the test if one could not be.
func SendAtOnce(t testing.TB, env *messages.Envelope, cs ...*Client) {
	t.Helper()
	var start, done sync.WaitGroup
	start.Add(1)
	errs := make(chan error, len(cs))
	for _, c := range cs {
		done.Go(func() {
			start.Wait()
			if err := c.Write(env); err != nil {
				errs <- err
			}
		})
	}
	start.Done()
	done.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
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
	for {
		e := c.next()
		if e.Type != messages.TypeSignal || e.ID == "" {
			return e
		}
		if !c.signals[e.ID] {
			c.signals[e.ID] = true
			return e
		}
		// A signal may come again after a resume, with the same id
		// (PROTOCOL.md §2); on one socket a repeat is a bug.
		if !c.resumed {
			c.t.Fatalf("%s: signal %s received twice on one socket", c, e.ID)
		}
	}
}

func (c *Client) next() *messages.Envelope {
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

// Resume connects old's user to gateway g with old's resume token. The new
// client drops the signals old has seen, as a client must after a resume.
func (m *Mesh) Resume(g int, old *Client) *Client {
	m.t.Helper()
	c, resp, err := m.DialRaw(g, m.Token(old.User), "resume="+url.QueryEscape(old.Welcome.Resume))
	if err != nil {
		m.t.Fatalf("resume %s: %v (%v)", old, err, resp)
	}
	c.signals, c.resumed = old.signals, true
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

// Frame is a frame a Recorder received, with when it arrived.
type Frame struct {
	Env *messages.Envelope
	At  time.Time
}

// Recorder keeps every frame of a client, for tests that follow many calls
// at once from several goroutines and check at the end that each delivery
// came exactly once. Its methods are safe for concurrent use and never
// fail the test themselves: they return errors.
type Recorder struct {
	c      *Client
	mu     sync.Mutex
	frames []Frame       // guarded by mu
	more   chan struct{} // closed and replaced when frames grows or done is set; guarded by mu
	done   bool          // the connection is closed and every frame recorded; guarded by mu
}

// Record starts recording every frame c receives from now on (the welcome
// excepted). Next and the Expect helpers must not be used on c afterwards.
func (c *Client) Record() *Recorder {
	r := &Recorder{c: c, more: make(chan struct{})}
	go func() {
		for {
			select {
			case e := <-c.frames:
				r.add(e)
			case <-c.closed: // read has sent its last frame: take what is left
				for len(c.frames) > 0 {
					r.add(<-c.frames)
				}
				r.mu.Lock()
				r.done = true
				close(r.more)
				r.mu.Unlock()
				return
			}
		}
	}()
	return r
}

func (r *Recorder) add(e *messages.Envelope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, Frame{Env: e, At: time.Now()})
	close(r.more)
	r.more = make(chan struct{})
}

// Client is the recorded client.
func (r *Recorder) Client() *Client { return r.c }

// Await returns the first frame recorded that matches, waiting up to Wait
// for one to arrive; what names it in the error.
func (r *Recorder) Await(what string, match func(*messages.Envelope) bool) (Frame, error) {
	deadline := time.NewTimer(Wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, f := range r.frames {
			if match(f.Env) {
				r.mu.Unlock()
				return f, nil
			}
		}
		more, done := r.more, r.done
		r.mu.Unlock()
		if done {
			return Frame{}, fmt.Errorf("%s: closed (%v) before %s", r.c, r.c.err, what)
		}
		select {
		case <-more:
		case <-deadline.C:
			return Frame{}, fmt.Errorf("%s: no %s within %v", r.c, what, Wait)
		}
	}
}

// AwaitClosed waits up to Wait until the server has closed the connection.
func (r *Recorder) AwaitClosed() error {
	deadline := time.NewTimer(Wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		more, done := r.more, r.done
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-more:
		case <-deadline.C:
			return fmt.Errorf("%s: still open after %v", r.c, Wait)
		}
	}
}

// Frames returns the frames recorded so far, in order of arrival.
func (r *Recorder) Frames() []Frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Frame(nil), r.frames...)
}
