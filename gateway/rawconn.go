package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A connection closed for abuse (1008) is not read any more: coder/websocket's
// close handshake would read, byte by byte, everything the client has in
// flight (megabytes for a flood, on a fast network) looking for the client's
// answer, for up to five seconds. rawConn throws that away in large chunks
// instead, for a bounded time and amount, so that the connection is closed
// cleanly (a reset could cut off the close frame) and cheaply.

const (
	// discardBytes and discardTime bound what is thrown away after discard:
	// a client that sends more, or for longer, is cut off.
	discardBytes = 4 << 20
	discardTime  = time.Second
)

var errDiscarded = errors.New("gateway: the client's data was discarded")

// rawConn is the TCP connection under a client's WebSocket. While the
// writer has it corked, what is written to it is kept in memory, to leave
// in one write at uncork: the frames of a batch cost one system call.
type rawConn struct {
	net.Conn
	discarding atomic.Bool

	// mu serializes writes to Conn, so that nothing written while a
	// corked batch is being sent overtakes it.
	mu     sync.Mutex
	corked bool    // guarded by mu
	buf    *[]byte // what was written while corked; guarded by mu
}

// Buffers of corked writes. One larger than corkKeep is not kept for
// another batch.
const corkKeep = 64 << 10

var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// cork keeps what is written from now on in memory, until uncork.
func (c *rawConn) cork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = true
	if c.buf == nil {
		c.buf = corkBuffers.Get().(*[]byte)
	}
}

// uncork writes what was kept since cork, if anything, in one write that
// must end by deadline, and writes through again.
func (c *rawConn) uncork(deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	b := c.buf
	c.buf = nil
	if b == nil {
		return nil
	}
	var err error
	if len(*b) > 0 {
		_ = c.Conn.SetWriteDeadline(deadline)
		_, err = c.Conn.Write(*b)
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
	if cap(*b) <= corkKeep {
		*b = (*b)[:0]
		corkBuffers.Put(b)
	}
	return err
}

func (c *rawConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// discard makes the next read throw away what the client sends until it
// closes the connection, or discardBytes, or discardTime, and fail.
func (c *rawConn) discard() {
	_ = c.Conn.SetReadDeadline(time.Now().Add(discardTime))
	c.discarding.Store(true)
}

func (c *rawConn) Read(p []byte) (int, error) {
	if !c.discarding.Load() {
		return c.Conn.Read(p)
	}
	_, err := io.CopyN(io.Discard, c.Conn, discardBytes)
	if err == nil {
		err = errDiscarded
	}
	return 0, err
}

// Sizes of the buffers websocket.Accept gets with the hijacked connection,
// for the life of the connection: the reader's is the most a read from the
// socket takes at once (more when a read asks for more), the writer's the
// most written at once outside a corked batch (a control frame fits).
// net/http's are 4 KiB each, and stay reachable as long as the handler
// that hijacked runs (serveWS returns at once for this reason).
const (
	readBuffer  = 1 << 10
	writeBuffer = 128
)

// hijackRecorder hands websocket.Accept the hijacked connection as a
// rawConn, with smaller buffers, and keeps it.
type hijackRecorder struct {
	http.ResponseWriter
	conn *rawConn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: the response writer cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &rawConn{Conn: conn}
	r := rw.Reader
	if r.Buffered() == 0 { // else the client has sent more: keep it
		r = bufio.NewReaderSize(h.conn, readBuffer)
	}
	return h.conn, bufio.NewReadWriter(r, bufio.NewWriterSize(h.conn, writeBuffer)), nil
}
