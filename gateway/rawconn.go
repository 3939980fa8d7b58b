package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
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

// rawConn is the TCP connection under a client's WebSocket.
type rawConn struct {
	net.Conn
	discarding atomic.Bool
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

// hijackRecorder hands websocket.Accept the hijacked connection as a
// rawConn, and keeps it.
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
	return h.conn, rw, nil
}
