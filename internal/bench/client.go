package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// conn is one load-generating WebSocket client. Its reader goroutine
// handles relayed signals itself and queues every other frame on ctrl for
// the scenario; writes may come from any goroutine (the library locks).
type conn struct {
	idx  int    // index among the run's connections: picks histogram shards
	user string // callmesh user id, or PeerJS peer id
	ws   *websocket.Conn
	ctrl chan *frame // frames other than relayed signals
	done chan struct{}

	closing atomic.Bool // we are closing it: its close is no error

	// Relayed signals received; written by the reader only.
	recv    atomic.Int64
	acks    atomic.Int64 // acks of this connection's signals (Options.Acked)
	dups    atomic.Int64 // a sequence number not above the last one
	lastSeq int64        // owned by the reader
}

// frame is the part of a server frame the scenarios look at, for both
// callmesh and PeerJS.
type frame struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Call    string `json:"call"`
	From    string `json:"from"`
	Reason  string `json:"reason"`
	Code    string `json:"code"`
	Src     string `json:"src"`
	Payload struct {
		Msg string `json:"msg"`
	} `json:"payload"`
}

// ctrlQueue is how many control frames a connection buffers for its
// scenario; more are dropped (and a wait for them times out).
const ctrlQueue = 64

// dialer opens WebSockets from several loopback source addresses, so that
// one address's ephemeral ports do not cap the number of connections.
type dialer struct {
	clients []*http.Client
	next    atomic.Uint64
}

// newDialer spreads dials over 127.0.0.1 … 127.0.0.<sources> when local
// (Linux routes all of 127/8 to lo), or uses the default route.
func newDialer(sources int, local bool) *dialer {
	d := &dialer{}
	if !local || sources < 1 {
		sources = 1
	}
	for i := range sources {
		nd := &net.Dialer{Timeout: 10 * time.Second}
		if local {
			nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%254))}
		}
		d.clients = append(d.clients, &http.Client{Transport: &http.Transport{
			DialContext:         nd.DialContext,
			MaxIdleConnsPerHost: 64,
		}})
	}
	return d
}

// dialError is a refused or failed dial, with the reason to count it under.
type dialError struct {
	reason string
	err    error
}

func (e *dialError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial opens u and starts the connection's reader. A refusal before the
// upgrade is a *dialError whose reason is "http_<status>" (http_429 is a
// rate limit).
func (d *dialer) dial(ctx context.Context, u string, idx int, user string, r *run) (*conn, error) {
	client := d.clients[d.next.Add(1)%uint64(len(d.clients))]
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		if resp != nil {
			return nil, &dialError{reason: fmt.Sprintf("http_%d", resp.StatusCode), err: err}
		}
		return nil, &dialError{reason: "dial", err: err}
	}
	ws.SetReadLimit(1 << 20)
	c := &conn{idx: idx, user: user, ws: ws, ctrl: make(chan *frame, ctrlQueue), done: make(chan struct{})}
	go c.read(r)
	return c, nil
}

// marker starts the benchmark's stamp in a relayed payload: a sequence
// number and the scheduled send time (stamp).
var marker = []byte(`"bench":"`)

const (
	seqDigits  = 12
	timeDigits = 19
	stampLen   = seqDigits + 1 + timeDigits
)

// read is the connection's reader goroutine. It reuses one buffer.
func (c *conn) read(r *run) {
	defer close(c.done)
	buf := make([]byte, 0, 2048)
	for {
		_, rd, err := c.ws.Reader(context.Background())
		if err != nil {
			if !c.closing.Load() {
				r.errors.add(closeReason(err))
			}
			return
		}
		buf, err = readInto(rd, buf[:0])
		if err != nil {
			if !c.closing.Load() {
				r.errors.add(closeReason(err))
			}
			return
		}
		if r.o.Acked && bytes.HasPrefix(buf, ackPrefix) && isStampID(buf[len(ackPrefix):]) {
			c.acked(r, buf[len(ackPrefix):len(ackPrefix)+stampLen])
			continue
		}
		if i := bytes.Index(buf, marker); i >= 0 && len(buf) >= i+len(marker)+stampLen {
			c.relayed(r, buf[i+len(marker):i+len(marker)+stampLen])
			continue
		}
		f := new(frame)
		if err := json.Unmarshal(buf, f); err != nil {
			r.errors.add("bad_frame")
			continue
		}
		switch f.Type {
		case "error":
			r.errors.add("error:" + f.Code + requestOf(f.ID))
		case "ERROR", "ID-TAKEN", "LEAVE", "EXPIRE":
			r.errors.add("peerjs:" + f.Type + strings.TrimSpace(" "+f.Payload.Msg))
		}
		select {
		case c.ctrl <- f:
		default: // nobody waits for it
		}
	}
}

// ackPrefix starts the ack of a signal sent with Options.Acked, whose id is
// the signal's stamp.
var ackPrefix = []byte(`{"type":"ack","id":"`)

// isStampID reports whether b starts with a stamp that ends a JSON string:
// the id of a signal's ack, not of a request's.
func isStampID(b []byte) bool {
	if len(b) <= stampLen || b[seqDigits] != ':' || b[stampLen] != '"' {
		return false
	}
	for i, ch := range b[:stampLen] {
		if i != seqDigits && (ch < '0' || ch > '9') {
			return false
		}
	}
	return true
}

// acked accounts for the ack of a signal with the given stamp.
func (c *conn) acked(r *run, stamp []byte) {
	c.acks.Add(1)
	if sched := time.Duration(parseDigits(stamp[seqDigits+1:])); int64(sched) >= r.measureFrom.Load() {
		r.ack.record(c.idx, time.Since(r.base)-sched)
	}
}

// relayed accounts for a relayed signal with the given stamp.
func (c *conn) relayed(r *run, stamp []byte) {
	now := time.Since(r.base)
	seq := parseDigits(stamp[:seqDigits])
	sched := time.Duration(parseDigits(stamp[seqDigits+1:]))
	if seq <= c.lastSeq {
		c.dups.Add(1)
	} else {
		c.lastSeq = seq
	}
	c.recv.Add(1)
	if int64(sched) >= r.measureFrom.Load() {
		r.lat.record(c.idx, now-sched)
	}
}

func parseDigits(b []byte) int64 {
	var n int64
	for _, d := range b {
		n = n*10 + int64(d-'0')
	}
	return n
}

// putDigits writes n into b as len(b) decimal digits, zero-padded.
func putDigits(b []byte, n int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

// readInto appends all of rd to buf.
func readInto(rd io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// closeReason names why a connection ended: its close code, or conn_lost.
func closeReason(err error) string {
	if code := websocket.CloseStatus(err); code != -1 {
		return fmt.Sprintf("close:%d", int(code))
	}
	return "conn_lost"
}

// send writes one text frame.
func (c *conn) send(b []byte) error {
	return c.ws.Write(context.Background(), websocket.MessageText, b)
}

// close ends the connection without counting it as an error, sending
// last first if it is not empty (callmesh's bye).
func (c *conn) close(last []byte) {
	c.closing.Store(true)
	if len(last) > 0 {
		_ = c.send(last)
		_ = c.ws.Close(websocket.StatusNormalClosure, "")
	} else {
		_ = c.ws.CloseNow()
	}
	<-c.done
}

// await returns the first control frame of c for which match is true,
// skipping others. It fails on a callmesh error frame whose id is id, an
// unexpected close, or the timeout, with the reason to count.
func (c *conn) await(timeout time.Duration, id string, match func(*frame) bool) (*frame, string) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case f := <-c.ctrl:
			if match(f) {
				return f, ""
			}
			if f.Type == "error" && id != "" && f.ID == id {
				return nil, "" // counted by the reader
			}
		case <-c.done:
			return nil, "" // counted by the reader
		case <-t.C:
			return nil, "timeout"
		}
	}
}

// errorCounts counts failures by reason. Safe for concurrent use.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errorCounts) add(reason string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	e.m[reason]++
	e.mu.Unlock()
}

// take returns the counts and starts again from none.
func (e *errorCounts) take() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.m
	e.m = nil
	if m == nil {
		m = map[string]int64{}
	}
	return m
}

func (e *errorCounts) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, v := range e.m {
		n += v
	}
	return n
}

// sum of the counts in m.
func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// formatErrors writes m as "reason=n reason=n", most frequent first.
func formatErrors(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// rateLimited reports whether m holds refusals of a rate limit.
func rateLimited(m map[string]int64) bool {
	for k, n := range m {
		if n > 0 && (k == "http_429" || k == "close:1008" || strings.HasPrefix(k, "error:rate_limited")) {
			return true
		}
	}
	return false
}

// requestOf names the request an error answers, by the id the bench gave
// it (pairs.go): ":invite", ":accept", ":hangup", or "" for another.
func requestOf(id string) string {
	if id == "" {
		return ""
	}
	switch id[0] {
	case 'i':
		return ":invite"
	case 'a':
		return ":accept"
	case 'h':
		return ":hangup"
	}
	return ""
}

var errNoCalls = errors.New("the peerjs target has no calls: use connect or relay")

// withQuery adds query parameters to the URL u.
func withQuery(u string, kv ...string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := pu.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	pu.RawQuery = q.Encode()
	return pu.String()
}
