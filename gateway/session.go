package gateway

import (
	"time"

	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// Bounds of what a session holds while no socket serves it. Past either,
// frames would be lost, so the session ends at once instead (its calls end
// with disconnected) and a later resume gets a fresh session. The bytes
// bound keeps a handover reply under NATS's default 1 MB payload limit.
const (
	heldMaxFrames = 1024
	heldMaxBytes  = 512 << 10
)

// heldFrame is one frame held for a session: with its envelope and binding
// when it is a delivery, so a catching-up socket can update its call views.
type heldFrame struct {
	outFrame
	env  *messages.Envelope
	bind *messages.Binding
	// handedOver marks a frame another gateway held (resume.go).
	handedOver bool
}

// hold keeps f for the socket that will serve the session, and reports
// false if the session has moved on (or lost frames already). Guarded by
// mu.
func (c *conn) hold(f outFrame, env *messages.Envelope, bind *messages.Binding) bool {
	if c.taken || c.overflow {
		return false
	}
	if len(c.held) >= heldMaxFrames || c.heldBytes+len(f.frame) > heldMaxBytes {
		c.overflow = true
		c.held, c.heldBytes = nil, 0
		go func() {
			c.closeWith(messages.CloseTooSlow, "too much held while resuming")
			c.s.finish(c)
		}()
		return false
	}
	c.held = append(c.held, heldFrame{outFrame: f, env: env, bind: bind})
	c.heldBytes += len(f.frame)
	return true
}

// startHolding diverts frames from the socket to held, keeping first the
// frame whose write failed and those still queued. Guarded by mu.
func (c *conn) startHolding() {
	if c.holding {
		return
	}
	c.holding = true
	var queued []heldFrame
	if c.unsent != nil {
		queued = append(queued, heldFrame{outFrame: *c.unsent})
		c.unsent = nil
	}
drain:
	for {
		select {
		case f := <-c.send:
			if f.frame != nil { // not closeAfterQueue's marker
				queued = append(queued, heldFrame{outFrame: f})
			}
		default:
			break drain
		}
	}
	for _, f := range queued {
		c.heldBytes += len(f.frame)
	}
	c.held = append(queued, c.held...)
}

// left handles the end of c's socket. After bye the session ends at once;
// otherwise it is held for the resume grace, then ends unless a socket on
// this or another gateway resumed it.
func (s *Server) left(c *conn) {
	c.mu.Lock()
	c.startHolding()
	taken := c.taken
	c.mu.Unlock()
	switch {
	case taken || s.bg.Err() != nil:
		// Handed over, or the gateway stopped: the routers' monitors end
		// what is not resumed elsewhere.
		s.unsubscribe(c)
	case c.bye.Load() || s.cfg.ResumeGrace == 0:
		s.finish(c)
	default:
		c.mu.Lock()
		c.grace = time.AfterFunc(s.cfg.ResumeGrace, func() { s.finish(c) })
		c.mu.Unlock()
	}
}

// finish ends c's session, unless it was handed over: it leaves presence
// (if this socket still holds it) and the routers end its calls.
func (s *Server) finish(c *conn) {
	c.mu.Lock()
	taken := c.taken
	c.taken = true
	c.held = nil
	c.mu.Unlock()
	if !taken && s.bg.Err() == nil {
		left := orphan{user: c.user, conn: c.id, holder: c.holder, bye: c.bye.Load()}
		gone, err := s.presence.Unregister(s.bg, c.user, c.id, presence.Conn{Holder: c.holder})
		switch {
		case err != nil:
			s.log.Warn("unregister", "conn", c.id, "err", err)
			s.orphaned(left) // the repair removes it and tells the routers
		case gone:
			req := &messages.Request{Op: messages.OpLeave, User: c.user, Conn: c.id, Gateway: s.id, Bye: left.bye}
			if _, err := s.request(s.bg, req); err != nil {
				s.log.Warn("leave", "conn", c.id, "err", err)
				left.removed = true
				s.orphaned(left) // the repair tells the routers again
			}
		}
		s.recheck(c.user)
	}
	s.unsubscribe(c)
}

// handOver lets the session go to a socket that resumed it and returns what
// was held for it, in order. ok is false if the session had already ended
// (or moved on) here.
func (c *conn) handOver() (frames []messages.HeldFrame, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.taken {
		return nil, false
	}
	c.startHolding()
	c.taken = true
	if c.grace != nil {
		c.grace.Stop()
	}
	frames = make([]messages.HeldFrame, len(c.held))
	for i, f := range c.held {
		frames[i] = messages.HeldFrame{ID: f.id, Frame: f.frame}
	}
	c.held, c.heldBytes = nil, 0
	return frames, true
}

// recentCalls remembers the last few calls that ended on a connection, so
// that a repeated ended or accepted (effects are at least once) is dropped.
type recentCalls struct {
	ids  [16]string
	next int
}

func (r *recentCalls) add(id string) {
	r.ids[r.next] = id
	r.next = (r.next + 1) % len(r.ids)
}

func (r *recentCalls) has(id string) bool {
	if id == "" {
		return false
	}
	for _, x := range r.ids {
		if x == id {
			return true
		}
	}
	return false
}
