package gateway

import (
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// hold keeps f for the socket that will serve the session (see
// outbox.hold), and ends the session when the hold overflows. Guarded by
// mu.
func (c *conn) hold(f heldFrame) bool {
	ok, overflowed := c.out.hold(f)
	if overflowed {
		c.s.goRun(func() {
			c.closeWith(messages.CloseTooSlow, "too much held while resuming")
			c.s.finish(c)
		})
	}
	return ok
}

// left handles the end of c's socket. After bye the session ends at once;
// otherwise it is held for the resume grace, then ends unless a socket on
// this or another gateway resumed it.
func (s *Server) left(c *conn) {
	c.mu.Lock()
	c.out.startHolding()
	taken := c.out.taken
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
		c.out.setGrace(s.tasks.after(s.cfg.ResumeGrace, func() { s.finish(c) }))
		c.mu.Unlock()
	}
}

// finish ends c's session, unless it was handed over: it leaves presence
// (if this socket still holds it) and the routers end its calls.
func (s *Server) finish(c *conn) {
	c.mu.Lock()
	taken := c.out.finish()
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
	return c.out.handOver()
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
