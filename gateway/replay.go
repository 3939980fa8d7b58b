package gateway

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// Signal repair. Core NATS is at most once, so a relayed signal can be lost
// when the receiving session's gateway dies before the session resumes
// elsewhere, when a NATS node or route dies with the signal in flight, or
// when it was written into a socket that was already dead. So each
// connection keeps the signals it relayed in each call (sentRing), numbered
// from 1 per sending socket, and the gateway of the other party asks for
// them again (CtlReplay) whenever it may have missed some: when the session
// resumes, when the gateway's NATS connection comes back, when a number is
// skipped, and when the sender's tail (CtlTail, sent each second for a
// while after its last signal) names one it has not seen. Its frames are
// held meanwhile; each signal has a unique id, and the release keeps the
// last copy of each (the replay is complete and in order) and drops those
// already sent on this socket. The client drops a signal whose id it has
// seen: after a resume it gets again what the dead socket may or may not
// have delivered.

// Bounds of the signals kept per call for a replay: past either, the oldest
// go (a peer away that long has more than a replay can repair).
const (
	sentMaxFrames = 512
	sentMaxBytes  = 1 << 20
)

// replayRetry is how long a replay is awaited before it is asked again.
const replayRetry = 300 * time.Millisecond

// A sender's tail goes out every tailEvery while its last signal in a call
// is younger than tailFor.
const (
	tailEvery = time.Second
	tailFor   = 10 * time.Second
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

// recentIDsMax is how many delivery ids recentIDs remembers.
const recentIDsMax = 512

// recentIDs remembers the last recentIDsMax delivery ids queued on a
// socket. It grows as ids come: an idle socket keeps none.
type recentIDs struct {
	ids  []string // a ring once full
	next int      // where the next id goes once full
	set  map[string]struct{}
}

func (r *recentIDs) add(id string) {
	if r.set == nil {
		r.set = make(map[string]struct{})
	}
	if len(r.ids) < recentIDsMax {
		r.ids = append(r.ids, id)
	} else {
		delete(r.set, r.ids[r.next])
		r.ids[r.next] = id
		r.next = (r.next + 1) % recentIDsMax
	}
	r.set[id] = struct{}{}
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
		c.resync([]peerRef{{ctl.Call, ctl.User, ctl.Conn}})
	case messages.CtlTail:
		c.mu.Lock()
		v := c.calls[ctl.Call]
		if !v.accepted() || v.peerConn != ctl.Conn {
			c.mu.Unlock()
			return
		}
		if ctl.Src != v.recvSrc {
			v.recvSrc, v.recvSeq, v.recvMax = ctl.Src, 0, 0
		}
		v.recvMax = max(v.recvMax, ctl.Seq)
		started := ctl.Seq > v.recvSeq && c.out.startResync()
		p := peerRef{ctl.Call, v.peer, v.peerConn}
		c.mu.Unlock()
		c.repair(started, p)
	}
}

// track notes a numbered signal from the peer, before it is delivered, and
// repairs a gap (the frame is then held with the replay).
func (c *conn) track(d *messages.Delivery) {
	c.mu.Lock()
	v := c.calls[d.Env.Call]
	if !v.accepted() {
		c.mu.Unlock()
		return
	}
	if d.Src != v.recvSrc { // the peer's socket changed (it resumed): numbers restart
		v.recvSrc, v.recvSeq, v.recvMax = d.Src, 0, 0
	}
	v.recvMax = max(v.recvMax, d.Seq)
	if d.Seq == v.recvSeq+1 {
		v.recvSeq++
	}
	started := d.Seq > v.recvSeq+1 && c.out.startResync()
	p := peerRef{d.Env.Call, v.peer, v.peerConn}
	c.mu.Unlock()
	c.repair(started, p)
}

// repair finishes the resync of one call that started (the frames are
// held: startResync said so), in the background.
func (c *conn) repair(started bool, p peerRef) {
	if started {
		c.goResync([]peerRef{p})
	}
}

// goResync finishes a started resync in the background; if the gateway
// has stopped, it lets go of what it held for it.
func (c *conn) goResync(peers []peerRef) {
	if !c.s.goRun(func() { c.finishResync(peers) }) {
		c.mu.Lock()
		c.out.stopHolding()
		c.mu.Unlock()
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
	c.s.sendControl(ctl.User, ctl.Conn, messages.Control{Op: messages.CtlReplayed, Call: ctl.Call})
}

// sendControl publishes ctl for the gateway holding connection conn of user.
func (s *Server) sendControl(user, conn string, ctl messages.Control) {
	d := &messages.Delivery{Conn: conn, Control: &ctl, Env: messages.Envelope{Type: "control"}}
	_ = s.nc.Publish(s.names.UserSubject(user), messages.EncodeDelivery(d))
}

// askReplays asks the other party of each call for its signals again and
// waits until each has sent them. An ask is repeated every replayRetry, up
// to twice RouterAttempt in all: after a NATS reconnect, this gateway's
// subscriptions reach the other nodes of a cluster a little later, and a
// replay sent before that is lost. A call whose replay came counts as
// caught up with what was heard of (what the sender no longer keeps is lost
// for good); one whose replay did not come is repaired again on its next
// gap or tail. c must be holding.
func (c *conn) askReplays(peers []peerRef) {
	if len(peers) == 0 {
		return
	}
	waits := make(map[peerRef]chan struct{}, len(peers))
	c.mu.Lock()
	if c.replays == nil {
		c.replays = map[string]chan struct{}{}
	}
	for _, p := range peers {
		waits[p] = make(chan struct{})
		c.replays[p.call] = waits[p]
	}
	c.mu.Unlock()
	deadline := time.Now().Add(2 * c.s.cfg.RouterAttempt)
	for len(waits) > 0 && time.Now().Before(deadline) {
		for p := range waits {
			c.s.sendControl(p.user, p.conn, messages.Control{Op: messages.CtlReplay, Call: p.call, User: c.user, Conn: c.id})
		}
		retry := time.NewTimer(replayRetry)
		for p, w := range waits {
			select {
			case <-w:
				delete(waits, p)
				continue
			case <-retry.C:
			}
			break
		}
		retry.Stop()
	}
	if len(waits) > 0 {
		c.s.log.Info("replay: no answer", "conn", c.id, "calls", len(waits))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range peers {
		if w, missed := waits[p]; missed {
			if c.replays[p.call] == w {
				delete(c.replays, p.call)
			}
		} else if v := c.calls[p.call]; v != nil {
			v.recvSeq = max(v.recvSeq, v.recvMax)
		}
	}
}

// resync repairs, in the background, the signals an open socket may have
// missed in calls: frames are held while the peers replay, then released
// once each.
func (c *conn) resync(peers []peerRef) {
	c.mu.Lock()
	started := c.out.startResync()
	c.mu.Unlock()
	if started {
		c.goResync(peers)
	}
}

// finishResync asks for the replays, then releases what was held.
func (c *conn) finishResync(peers []peerRef) {
	c.askReplays(peers)
	c.mu.Lock()
	defer c.mu.Unlock()
	batch := c.out.release()
	c.out.stopHolding()
	for _, f := range batch {
		if f.env == nil || c.apply(f.id, f.env, f.bind) {
			c.enqueueLocked(f.outFrame)
		}
	}
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
			if v.state == callAccepted {
				peers = append(peers, peerRef{call, v.peer, v.peerConn})
			}
		}
		c.mu.Unlock()
		for _, p := range peers {
			s.sendControl(p.user, p.conn, messages.Control{Op: messages.CtlResync, Call: p.call, User: c.user, Conn: c.id})
		}
		if len(peers) > 0 {
			c.resync(peers)
		}
	}
}

// sendTails sends, every tailEvery, the tail of each call whose last signal
// is younger than tailFor, until the gateway stops.
func (s *Server) sendTails() {
	t := time.NewTicker(tailEvery)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			conns := s.sockets()
			s.mu.Unlock()
			for _, c := range conns {
				c.sendTails(now)
			}
		}
	}
}

// sendTails publishes c's tails, under c.mu as relay publishes, so each
// follows the signals it counts.
func (c *conn) sendTails(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for call, v := range c.calls {
		if v.state != callAccepted || v.sentSeq == 0 || now.Sub(v.sentAt) > tailFor {
			continue
		}
		c.s.sendControl(v.peer, v.peerConn, messages.Control{
			Op: messages.CtlTail, Call: call, User: c.user, Conn: c.id, Seq: v.sentSeq, Src: c.holder})
	}
}
