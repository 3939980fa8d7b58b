package gateway

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// Signal repair. Core NATS is at most once, so a relayed signal can be lost
// when the receiving session's gateway dies before the session resumes
// elsewhere, when a NATS node dies with the signal in flight, or when it was
// written into a socket that was already dead. So each connection keeps the
// signals it relayed in each call (sentRing), and the gateway of the other
// party asks for them again (CtlReplay) whenever it may have missed some:
// when the session resumes, and when the gateway's NATS connection comes
// back. Its frames are held meanwhile; each signal has a unique id, and the
// release keeps the last copy of each (the replay is complete and in order)
// and drops those already sent on this socket. The client drops a signal
// whose id it has seen: after a resume it gets again what the dead socket
// may or may not have delivered.

// Bounds of the signals kept per call for a replay: past either, the oldest
// go (a peer away that long has more than a replay can repair).
const (
	sentMaxFrames = 512
	sentMaxBytes  = 1 << 20
)

// sentRing is the signals a connection relayed in one call, oldest first,
// as published (delivery framing, with their ids).
type sentRing struct {
	frames [][]byte
	bytes  int
}

func (r *sentRing) add(delivery []byte) {
	r.frames = append(r.frames, delivery)
	r.bytes += len(delivery)
	for len(r.frames) > sentMaxFrames || r.bytes > sentMaxBytes {
		r.bytes -= len(r.frames[0])
		r.frames[0] = nil
		r.frames = r.frames[1:]
	}
}

// recentIDs remembers the delivery ids last queued on a socket.
type recentIDs struct {
	ids  [512]string
	next int
	set  map[string]struct{}
}

func (r *recentIDs) add(id string) {
	if r.set == nil {
		r.set = make(map[string]struct{}, len(r.ids))
	}
	delete(r.set, r.ids[r.next])
	r.ids[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ids)
}

func (r *recentIDs) has(id string) bool {
	_, ok := r.set[id]
	return ok
}

// peerRef names one accepted call of a connection and the other party.
type peerRef struct{ call, user, conn string }

// control serves a control delivery addressed to c.
func (c *conn) control(ctl *messages.Control) {
	switch ctl.Op {
	case messages.CtlReplay:
		c.replay(ctl)
	case messages.CtlReplayed:
		c.mu.Lock()
		if ch := c.replays[ctl.Call]; ch != nil {
			close(ch)
			delete(c.replays, ctl.Call)
		}
		c.mu.Unlock()
	case messages.CtlResync:
		go c.resync([]peerRef{{ctl.Call, ctl.User, ctl.Conn}})
	}
}

// replay sends again the signals c relayed in the call to the asking
// connection, if it is the other party, then CtlReplayed. Under c.mu, as
// relay publishes, so nothing c sends gets between them.
func (c *conn) replay(ctl *messages.Control) {
	subject := c.s.names.UserSubject(ctl.User)
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.calls[ctl.Call]; v != nil && v.peer == ctl.User && v.peerConn == ctl.Conn {
		for _, f := range v.sent.frames {
			_ = c.s.nc.Publish(subject, f)
		}
	}
	done := &messages.Delivery{Conn: ctl.Conn, Control: &messages.Control{Op: messages.CtlReplayed, Call: ctl.Call}, Env: controlEnv}
	_ = c.s.nc.Publish(subject, messages.EncodeDelivery(done))
}

// controlEnv is the envelope of a control delivery; it never reaches a client.
var controlEnv = messages.Envelope{Type: "control"}

// askReplays asks the other party of each call for its signals again and
// waits, at most RouterAttempt, until each has sent them. c must be holding.
func (c *conn) askReplays(peers []peerRef) {
	if len(peers) == 0 {
		return
	}
	waits := make([]chan struct{}, len(peers))
	c.mu.Lock()
	if c.replays == nil {
		c.replays = map[string]chan struct{}{}
	}
	for i, p := range peers {
		waits[i] = make(chan struct{})
		c.replays[p.call] = waits[i]
	}
	c.mu.Unlock()
	for _, p := range peers {
		ask := &messages.Delivery{Conn: p.conn, Env: controlEnv,
			Control: &messages.Control{Op: messages.CtlReplay, Call: p.call, User: c.user, Conn: c.id}}
		_ = c.s.nc.Publish(c.s.names.UserSubject(p.user), messages.EncodeDelivery(ask))
	}
	deadline := time.NewTimer(c.s.cfg.RouterAttempt)
	defer deadline.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline.C:
			c.s.log.Info("replay: no answer", "conn", c.id)
			return
		}
	}
}

// resync repairs the signals an open socket may have missed in calls:
// frames are held while the peers replay, then released once each.
func (c *conn) resync(peers []peerRef) {
	c.mu.Lock()
	if c.holding || c.taken { // away or resuming: the resume repairs
		c.mu.Unlock()
		return
	}
	c.holding = true
	c.mu.Unlock()
	c.askReplays(peers)
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.release()
	c.holding = false
	for _, f := range batch {
		if f.env == nil || c.apply(f.id, f.env, f.bind) {
			c.enqueueLocked(f.outFrame)
		}
	}
}

// release takes what c holds, each delivery once: its last copy (a replay
// resends in order what came before it), and none already queued on this
// socket. Guarded by mu.
func (c *conn) release() []heldFrame {
	batch := c.held
	c.held, c.heldBytes = nil, 0
	seen := make(map[string]bool, len(batch))
	keep := make([]bool, len(batch))
	n := 0
	for i := len(batch) - 1; i >= 0; i-- {
		id := batch[i].id
		if id != "" && (seen[id] || c.sentIDs.has(id)) {
			continue
		}
		seen[id] = true
		keep[i] = true
		n++
	}
	out := make([]heldFrame, 0, n)
	for i, f := range batch {
		if keep[i] {
			out = append(out, f)
		}
	}
	return out
}

// onReconnect repairs what the gateway's NATS connection may have lost
// while it was down: for each accepted call of each open socket, the peer
// sends its signals again (resync) and is asked to have ours sent again.
func (s *Server) onReconnect() {
	s.mu.Lock()
	conns := s.sockets()
	s.mu.Unlock()
	for _, c := range conns {
		var peers []peerRef
		c.mu.Lock()
		for call, v := range c.calls {
			if v.state == "accepted" {
				peers = append(peers, peerRef{call, v.peer, v.peerConn})
			}
		}
		c.mu.Unlock()
		for _, p := range peers {
			ask := &messages.Delivery{Conn: p.conn, Env: controlEnv,
				Control: &messages.Control{Op: messages.CtlResync, Call: p.call, User: c.user, Conn: c.id}}
			_ = s.nc.Publish(s.names.UserSubject(p.user), messages.EncodeDelivery(ask))
		}
		if len(peers) > 0 {
			go c.resync(peers)
		}
	}
}
