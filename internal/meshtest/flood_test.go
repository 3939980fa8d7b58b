package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// floodData is the data of a flood frame: 32 KB, just under the default
// limit on data.
var floodData = `"` + strings.Repeat("x", 32000) + `"`

// floodFrame is one frame of the flood: a signal of 32 KB on call, with
// its id last, far beyond the head of a frame that a gateway reads when it
// refuses the frame without decoding it. A rate_limited error that names
// this id means the gateway decoded the frame it refused.
func floodFrame(call string, i int) []byte {
	return []byte(fmt.Sprintf(`{"type":"signal","call":%q,"data":%s,"id":"flood-%d"}`, call, floodData, i))
}

// flood is the attack of issue 10, item 4: connections in pairs, each pair
// in a call, each sending 32 KB signals nonstop and resuming its session at
// once whenever the gateway closes it, again and again while it is refused.
// Its goroutines never fail the test: they count what happened, for the
// test to check.
type flood struct {
	m    *Mesh
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	flooders []*flooderStats // guarded by mu, like their fields
	// limited counts the rate_limited errors the flooders got, and
	// limitedWithID those that named the frame's id.
	limited, limitedWithID int
	// broken lists HTTP refusals that broke the contract (PROTOCOL.md §1).
	broken []string
}

// flooderStats is what happened to one flooding connection.
type flooderStats struct {
	user    string
	welcome int                          // sessions served (the first connect and every resume)
	frames  int                          // frames written
	closes  map[websocket.StatusCode]int // how the gateway closed it
	refused map[int]int                  // dials refused, by HTTP status
}

// startFlood connects n flooders (n even), flooder i to gateway i%2, has
// them call each other in pairs, and then sets them all flooding until the
// test ends or stopFlood.
func (m *Mesh) startFlood(n int) *flood {
	m.t.Helper()
	f := &flood{m: m, stop: make(chan struct{})}
	type flooder struct {
		st                  *flooderStats
		g                   int
		token, resume, call string
	}
	var all []flooder
	for i := 0; i < n; i += 2 {
		a, b := m.Dial(i%2, fmt.Sprintf("flooder-%d", i)), m.Dial((i+1)%2, fmt.Sprintf("flooder-%d", i+1))
		call := Establish(a, b)
		for j, c := range []*Client{a, b} {
			st := &flooderStats{user: c.User, welcome: 1, closes: map[websocket.StatusCode]int{}, refused: map[int]int{}}
			f.flooders = append(f.flooders, st)
			all = append(all, flooder{st, (i + j) % 2, m.Token(c.User), c.Welcome.Resume, call})
			c.Drop() // its session goes on in the flooder's hands
		}
	}
	for _, fl := range all {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.run(fl.st, fl.g, fl.token, fl.resume, fl.call)
		}()
	}
	m.t.Cleanup(f.stopFlood)
	return f
}

// stopFlood stops the flood and waits for its goroutines. Idempotent.
func (f *flood) stopFlood() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
}

func (f *flood) stopped() bool {
	select {
	case <-f.stop:
		return true
	default:
		return false
	}
}

// run is one flooder: resume, flood until closed, again.
func (f *flood) run(st *flooderStats, g int, token, resume, call string) {
	for n := 0; !f.stopped(); {
		ws, welcome, ok := f.dial(st, g, token, resume)
		if !ok {
			// Refused: try again at once, as an attacker would (but not
			// in a loop tight enough to starve a 2-core test machine).
			select {
			case <-f.stop:
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		resume = welcome.Resume
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			f.read(st, ws)
		}()
		for !f.stopped() {
			ctx, cancel := context.WithTimeout(context.Background(), Wait)
			err := ws.Write(ctx, websocket.MessageText, floodFrame(call, n))
			cancel()
			if err != nil {
				break
			}
			n++
			f.mu.Lock()
			st.frames++
			f.mu.Unlock()
		}
		ws.CloseNow()
		<-closed
	}
}

// dial connects (resuming the session) and reads the welcome.
func (f *flood) dial(st *flooderStats, g int, token, resume string) (*websocket.Conn, messages.Welcome, bool) {
	var w messages.Welcome
	u := f.m.Gateways[g].URL + "?access_token=" + url.QueryEscape(token) + "&resume=" + url.QueryEscape(resume)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		if resp != nil {
			f.refused(st, resp)
		}
		return nil, w, false
	}
	ws.SetReadLimit(1 << 20)
	_, b, err := ws.Read(ctx)
	var env messages.Envelope
	if err == nil {
		err = json.Unmarshal(b, &env)
	}
	if err == nil && env.Type == messages.TypeWelcome {
		err = json.Unmarshal(env.Data, &w)
	}
	if err != nil || env.Type != messages.TypeWelcome {
		f.mu.Lock()
		st.closes[websocket.CloseStatus(err)]++
		f.mu.Unlock()
		ws.CloseNow()
		return nil, w, false
	}
	f.mu.Lock()
	st.welcome++
	f.mu.Unlock()
	return ws, w, true
}

// refused records a dial refused before the upgrade, and checks a 429
// against PROTOCOL.md §1: a JSON body with code rate_limited and a
// Retry-After of whole seconds.
func (f *flood) refused(st *flooderStats, resp *http.Response) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st.refused[resp.StatusCode]++
	if resp.StatusCode != http.StatusTooManyRequests {
		return
	}
	if problem := checkRateLimited(resp); problem != "" {
		f.broken = append(f.broken, problem)
	}
}

// checkRateLimited says what is wrong with a 429 response ("" if nothing).
func checkRateLimited(resp *http.Response) string {
	var body struct{ Code, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Code != messages.CodeRateLimited {
		return fmt.Sprintf("429 body code %q (%v), want %q", body.Code, err, messages.CodeRateLimited)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return fmt.Sprintf("429 Content-Type %q", ct)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		return fmt.Sprintf("429 Retry-After %q, want whole seconds ≥ 1", resp.Header.Get("Retry-After"))
	}
	return ""
}

// read discards what the flooder receives, counting rate_limited errors and
// the close.
func (f *flood) read(st *flooderStats, ws *websocket.Conn) {
	for {
		_, b, err := ws.Read(context.Background())
		if err != nil {
			if !f.stopped() {
				f.mu.Lock()
				st.closes[websocket.CloseStatus(err)]++ // -1: no close frame
				f.mu.Unlock()
			}
			return
		}
		var e messages.Envelope
		if len(b) > 1024 {
			continue // a relayed flood frame, not an error: not worth decoding here
		}
		if json.Unmarshal(b, &e) == nil && e.Type == messages.TypeError && e.Code == messages.CodeRateLimited {
			f.mu.Lock()
			f.limited++
			if strings.HasPrefix(e.ID, "flood-") {
				f.limitedWithID++
			}
			f.mu.Unlock()
		}
	}
}

// shown reports what the flood has not yet met: every flooder closed with
// 1008 and refused with 429 at least once.
func (f *flood) shown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range f.flooders {
		if st.closes[messages.ClosePolicy] == 0 || st.refused[http.StatusTooManyRequests] == 0 {
			return fmt.Errorf("%s: %s", st.user, st)
		}
	}
	return nil
}

func (st *flooderStats) String() string {
	return fmt.Sprintf("%d sessions, %d frames written, closed %v, refused %v", st.welcome, st.frames, st.closes, st.refused)
}

// shippedLimits puts back the limits meshtest lifts: the connect limits.
func shippedLimits(c *gateway.Config) {
	d := gateway.DefaultConfig()
	c.AddrConnectRate, c.AddrConnectBurst = d.AddrConnectRate, d.AddrConnectBurst
	c.UserConnectRate, c.UserConnectBurst = d.UserConnectRate, d.UserConnectBurst
}

// TestFlood is issue 10, item 4, with the shipped limits: ten connections
// flood the gateways with 32 KB signals and resume after every close,
// while alice and bob, in a call of their own, keep signalling at a steady
// pace. Every one of their signals arrives, in order, and nothing else
// does; every flooder is closed with 1008, and refused with 429 (with the
// documented body) when it comes straight back; and the frames the
// gateways refused were not decoded: the rate_limited errors do not name
// the frames' ids, which come after 32 KB of data.
func TestFlood(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 10 * time.Second, Gateway: shippedLimits})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	f := m.startFlood(10)
	// Both ways, one signal every 25 ms: within the message rate.
	pace := time.NewTicker(25 * time.Millisecond)
	defer pace.Stop()
	deadline := time.Now().Add(2 * Wait)
	n := 0
	for {
		n++
		alice.Signal(call, n)
		bob.ExpectSignal(call, n)
		bob.Signal(call, n)
		alice.ExpectSignal(call, n)
		err := f.shown()
		if err == nil && n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d signals each way the flood has not shown its hand: %v", n, err)
		}
		<-pace.C
	}
	f.stopFlood()
	m.Barrier(alice)
	m.Barrier(bob)

	f.mu.Lock()
	defer f.mu.Unlock()
	for _, st := range f.flooders {
		t.Logf("%s: %s", st.user, st)
	}
	refused := m.Gateways[0].Counter("callmesh_gateway_frames_refused_total") + m.Gateways[1].Counter("callmesh_gateway_frames_refused_total")
	t.Logf("%d signals each way; %d rate_limited errors; %.0f frames refused undecoded", n, f.limited, refused)
	if len(f.broken) > 0 {
		t.Errorf("429 answers break the contract: %q", f.broken)
	}
	if f.limited == 0 || f.limitedWithID > 0 {
		t.Errorf("%d rate_limited errors, %d of them naming the refused frame's id (only a decoded frame could)", f.limited, f.limitedWithID)
	}
	if refused == 0 {
		t.Errorf("no frame was refused before decoding")
	}
}
