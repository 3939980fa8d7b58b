package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// Presence repair. An entry in presence that names this gateway but no
// socket of it (a phantom) keeps its user online for invites and holds one
// of the user's connections under the limit, for as long as the gateway
// lives. Such an entry is left behind by a write whose outcome is unknown
// (a register or takeover that failed after it may have landed) or by an
// unregister that failed. The gateway keeps those as orphans and removes
// them in the background until it succeeds, then tells the routers that
// the connection left, as finish does, so that its calls end.
//
// It also checks, every few heartbeats, the records of the users whose
// sessions ended here, who were refused for the limit here, or to whose
// connections a router delivered something this gateway does not hold, and
// removes the entries naming this gateway that no socket of it holds,
// however they got there.
//
// Removal is a compare-and-set on the entry's holder (each socket has its
// own), so an entry that a resume took over in the meantime, here or on
// another gateway, is never removed. A user's record is read before the
// gateway lists its sockets: a socket subscribes (and is listed) before it
// registers, and is unlisted only once its session has ended or moved on,
// so a socket between subscribe and register, or resuming, is never taken
// for a phantom.
//
// Nothing needs repairing at start: a gateway's id is new in every process,
// so presence names no connection of it yet, and the entries of a gateway
// that died are evicted by the routers' monitors once its heartbeat key has
// expired (presence.Monitor).

// reconcileHeartbeats is how many heartbeats apart the repair runs.
const reconcileHeartbeats = 5

// orphan is a presence entry this gateway may have written that no socket
// of it holds.
type orphan struct {
	user, conn, holder string
	bye                bool // the session ended with bye (for the routers)
	removed            bool // out of presence; the routers are still to be told
}

// repairs is the repair's work: guarded by mu.
type repairs struct {
	mu      sync.Mutex
	orphans map[string]orphan   // by holder
	users   map[string]struct{} // users whose records to check
}

// orphaned hands o to the repair.
func (s *Server) orphaned(o orphan) {
	s.repairs.mu.Lock()
	defer s.repairs.mu.Unlock()
	s.repairs.orphans[o.holder] = o
}

// recheck has the repair check user's record for phantoms of this gateway.
func (s *Server) recheck(user string) {
	if user == "" {
		return
	}
	s.repairs.mu.Lock()
	defer s.repairs.mu.Unlock()
	s.repairs.users[user] = struct{}{}
}

// reconcile runs the repair every reconcileHeartbeats heartbeats until the
// gateway stops.
func (s *Server) reconcile() {
	every := reconcileHeartbeats * s.cfg.Heartbeat
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
		}
		s.repair(every)
	}
}

// repair does the work at hand, each step bounded by budget.
func (s *Server) repair(budget time.Duration) {
	s.repairs.mu.Lock()
	users := s.repairs.users
	s.repairs.users = map[string]struct{}{}
	s.repairs.mu.Unlock()
	for user := range users {
		ctx, cancel := context.WithTimeout(s.bg, budget)
		s.findPhantoms(ctx, user)
		cancel()
	}

	s.repairs.mu.Lock()
	orphans := make([]orphan, 0, len(s.repairs.orphans))
	for _, o := range s.repairs.orphans {
		orphans = append(orphans, o)
	}
	s.repairs.mu.Unlock()
	for _, o := range orphans {
		ctx, cancel := context.WithTimeout(s.bg, budget)
		done := s.remove(ctx, &o)
		cancel()
		s.repairs.mu.Lock()
		if done {
			delete(s.repairs.orphans, o.holder)
		} else {
			s.repairs.orphans[o.holder] = o
		}
		s.repairs.mu.Unlock()
	}
}

// findPhantoms makes orphans of the entries in user's record that name
// this gateway and no socket of it (a record it cannot read is checked
// again next time).
func (s *Server) findPhantoms(ctx context.Context, user string) {
	conns, err := s.presence.Conns(ctx, user, kvutil.Nearest)
	if err != nil {
		s.log.Warn("repair: read presence", "err", err)
		s.recheck(user)
		return
	}
	held := s.holders(user) // after the read (see above)
	for id, at := range conns {
		// An entry without a holder is not one this gateway wrote.
		if at.Gateway == s.id && at.Holder != "" && held[at.Holder] != id {
			s.repairs.mu.Lock()
			if _, known := s.repairs.orphans[at.Holder]; !known {
				s.repairs.orphans[at.Holder] = orphan{user: user, conn: id, holder: at.Holder}
			}
			s.repairs.mu.Unlock()
		}
	}
}

// holders maps the holder of each socket of user here to its session.
func (s *Server) holders(user string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	held := map[string]string{}
	if u := s.users[s.names.UserSubject(user)]; u != nil {
		for c := range u.conns {
			held[c.holder] = c.id
		}
	}
	return held
}

// remove takes o out of presence unless another holder has it, and tells
// the routers that its connection left. It reports whether o is done with.
func (s *Server) remove(ctx context.Context, o *orphan) bool {
	if !o.removed {
		gone, err := s.presence.Unregister(ctx, o.user, o.conn, presence.Conn{Gateway: s.id, Holder: o.holder})
		if err != nil {
			s.log.Warn("repair: unregister", "conn", o.conn, "err", err)
			return false
		}
		if !gone {
			return true // resumed by another socket, which owns it now
		}
		o.removed = true
	}
	req := &messages.Request{Op: messages.OpLeave, User: o.user, Conn: o.conn, Gateway: s.id, Bye: o.bye}
	if _, err := s.request(ctx, req); err != nil {
		s.log.Warn("repair: leave", "conn", o.conn, "err", err)
		return false
	}
	return true
}
