package gateway

import (
	"context"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/messages"
)

// A connection's writer runs only while its outbox has something to write:
// an idle connection costs no goroutine but its reader. The writer takes
// everything queued at once and writes it corked (rawconn.go): the frames
// of a batch leave in one write to the socket, with one deadline.

// serve opens the outbox to the writer, once the client has its welcome
// (and, after a resume, what was held for it), and arms the pings.
func (c *conn) serve() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pinger = c.s.tasks.after(c.s.cfg.PingInterval, c.ping)
	if c.out.serve() {
		c.startWriter()
	}
}

// startWriter starts the writer, which the outbox has counted as started.
// Guarded by mu.
func (c *conn) startWriter() {
	c.writers.Add(1)
	if !c.s.goRun(c.writeLoop) {
		c.writers.Done() // the gateway has stopped; its sockets are closed
	}
}

// writeLoop writes what the outbox holds until it is empty, or until the
// socket fails or closeAfter's marker closes it.
func (c *conn) writeLoop() {
	defer c.writers.Done()
	for {
		c.mu.Lock()
		batch := c.out.take()
		code, reason := c.out.closeCode, c.out.closeReason
		c.mu.Unlock()
		if batch == nil {
			return
		}
		n, err := c.writeFrames(batch)
		c.mu.Lock()
		switch {
		case err != nil:
			c.out.failed(batch[n:]) // held for a resume (session.go)
		case n < len(batch): // closeAfter's marker
			c.out.failed(batch[n+1:])
		default:
			c.out.wrote(batch)
		}
		c.mu.Unlock()
		switch {
		case err != nil:
			c.cancel() // the reader ends too
			return
		case n < len(batch):
			c.closeWith(code, reason)
			return
		}
	}
}

// writeFrames writes frames up to the first close marker and reports how
// many it wrote. Under a rawConn they leave in one write, within
// WriteTimeout; if that write fails, none counts as written.
func (c *conn) writeFrames(frames []outFrame) (int, error) {
	if c.raw == nil {
		for i, f := range frames {
			if f.frame == nil {
				return i, nil
			}
			if err := c.write(f.frame); err != nil {
				return i, err
			}
		}
		return len(frames), nil
	}
	c.raw.cork()
	n := 0
	var err error
	for ; n < len(frames) && frames[n].frame != nil; n++ {
		// Corked, the frame goes into memory: no deadline is needed (the
		// flush has one), and none is set up per frame.
		if err = c.ws.Write(context.Background(), websocket.MessageText, frames[n].frame); err != nil {
			break
		}
	}
	if ferr := c.raw.uncork(time.Now().Add(c.s.cfg.WriteTimeout)); ferr != nil {
		return 0, ferr
	}
	return n, err
}

// write writes one frame, within WriteTimeout.
func (c *conn) write(frame []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, frame)
}

// ping pings the client, and arms the next ping once it has answered. A
// client that does not answer within PingInterval is closed with 1008.
func (c *conn) ping() {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.PingInterval)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		if c.ctx.Err() == nil {
			c.closeWith(messages.ClosePolicy, "no pong")
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() == nil {
		c.pinger.Reset(c.s.cfg.PingInterval)
	}
}
