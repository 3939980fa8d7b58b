package gateway

import (
	"io"
	"time"

	"golang.org/x/time/rate"

	"github.com/callmesh/callmesh/messages"
)

// Each connection's frames are checked against its message bucket before
// they are read into memory, and against its byte bucket once read, both
// before they are decoded (PROTOCOL.md §1): a flood costs the gateway
// reading it off the socket, not decoding it.

// readFrame reads the frame r holds. A frame over the message rate is not
// kept: only its head is, for the id of the refusal (messages.PeekID), and
// the rest is discarded. limit names the bucket that refused the frame, ""
// when it may be decoded.
func (c *conn) readFrame(r io.Reader) (frame []byte, limit string, err error) {
	if !c.limit.Allow() {
		head := make([]byte, messages.PeekLen)
		n, err := io.ReadFull(r, head)
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		} else if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil // a frame shorter than the head
		}
		return head[:n], limitMessages, err
	}
	if frame, err = io.ReadAll(r); err != nil {
		return nil, "", err
	}
	if !c.bytes.AllowN(time.Now(), len(frame)) {
		return frame, limitBytes, nil
	}
	return frame, "", nil
}

// refuse answers a frame that limit refused, without decoding it, and
// reports whether the connection goes on. One that keeps sending into its
// limits (more than a burst of refused frames, or of refused bytes, beyond
// a tenth of the rate) is closed with 1008 once the answers already queued
// are written. Called by the reader only.
func (c *conn) refuse(limit string, frame []byte) bool {
	c.s.guard.framesRefused.WithLabelValues(limit).Inc()
	if c.abuse == nil {
		c.abuse = rate.NewLimiter(rate.Limit(c.s.cfg.MessageRate/10), c.s.cfg.MessageBurst)
		c.bytesAbuse = rate.NewLimiter(rate.Limit(c.s.cfg.ByteRate/10), c.s.cfg.ByteBurst)
	}
	abuse := !c.abuse.Allow()
	if limit == limitBytes {
		abuse = !c.bytesAbuse.AllowN(time.Now(), len(frame)) || abuse
	}
	if abuse {
		if c.raw != nil {
			c.raw.discard() // what the client has in flight: not read into frames
		}
		// The user comes back no sooner than its connect bucket refills.
		c.s.guard.user.empty(c.user, time.Now())
		c.closeAfterQueue(messages.ClosePolicy, "rate limit exceeded again and again")
		return false
	}
	// Refusals are answered while the client reads its answers; a flood
	// that does not is refused silently rather than overflowing its own
	// queue, until the abuse limit closes it.
	c.mu.Lock()
	roomy := c.out.pending() < c.out.max/2
	c.mu.Unlock()
	if roomy {
		c.replyError(messages.PeekID(frame), messages.CodeRateLimited, "too many messages; slow down")
	}
	return true
}
