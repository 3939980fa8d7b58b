package gateway

import (
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/messages"
)

// Bounds of what a session holds while no socket serves it. Past either,
// frames would be lost, so the session ends at once instead (its calls end
// with disconnected) and a later resume gets a fresh session. The bytes
// bound keeps a handover reply under NATS's default 1 MB payload limit.
const (
	heldMaxFrames = 1024
	heldMaxBytes  = 512 << 10
)

// spareMax is the largest batch whose slice the outbox keeps for the next
// queue: a busy connection reuses two slices, an idle one keeps none.
const spareMax = 64

// outFrame is one frame for the client, with its delivery id ("" for
// replies) so a resume can drop frames that two gateways both held. A nil
// frame is closeAfter's marker.
type outFrame struct {
	id    string
	frame []byte
	// flush is, for the ack of a relayed signal, the round of the NATS
	// flush it waits for (ackflush.go); 0 for every other frame.
	flush uint64
}

// heldFrame is one frame held for a session: with its envelope and binding
// when it is a delivery, so a catching-up socket can update its call views.
type heldFrame struct {
	outFrame
	env  *messages.Envelope
	bind *messages.Binding
	// handedOver marks a frame another gateway held (resume.go).
	handedOver bool
}

// outbox is what a session has for its client: the queue that the socket's
// writer drains, and the frames held while no socket serves the session (or
// while a resuming or resyncing socket catches up). Its methods are the
// only writers of its fields, and are called with the conn's mu held; the
// conn starts the writer and closes the socket when they say so.
type outbox struct {
	max int // bound of the frames queued and being written (Config.SendQueue)

	// The queue, while the socket is served.
	queue []outFrame // waiting for the writer, in order
	// waiting follows queue: an ack whose flush has not been done yet,
	// and everything queued after it (ackflush.go).
	waiting []outFrame
	flushed uint64     // the last flush round done for this connection's acks
	spare   []outFrame // the writer's last batch, emptied: the next queue
	writing int        // frames taken by the writer and not yet written
	writer  bool       // a writer runs, or has been started
	open    bool       // the socket has its welcome: a writer may start
	ended   bool       // the socket has ended or failed: no writer starts
	// closeCode and closeReason are those of closeAfter's marker.
	closeCode   websocket.StatusCode
	closeReason string
	sent        recentIDs // the deliveries last queued on this socket (replay.go)

	// The hold: frames go to held instead of queue (no socket serves the
	// session, or a resuming or resyncing socket has not caught up yet).
	holding   bool
	held      []heldFrame
	heldBytes int
	overflow  bool        // held outgrew its bound: frames were lost
	unsent    []outFrame  // what the writer could not write, in order
	taken     bool        // the session has moved on: handed over or finished
	grace     *time.Timer // ends the session when the resume grace runs out
}

// push queues f for the writer, or makes it wait behind an ack whose flush
// is not done yet (or when it is one). full is true when the queue is at
// its bound (f is not queued: the client is too slow); start is true when
// a writer must be started for it.
func (o *outbox) push(f outFrame) (start, full bool) {
	if o.pending() >= o.max {
		return false, true
	}
	if f.id != "" {
		o.sent.add(f.id)
	}
	if len(o.waiting) > 0 || f.flush > o.flushed {
		o.waiting = append(o.waiting, f)
		return false, false
	}
	o.append(f)
	return o.wake(), false
}

// append adds f to the queue.
func (o *outbox) append(f outFrame) {
	if o.queue == nil {
		o.queue, o.spare = o.spare, nil
	}
	o.queue = append(o.queue, f)
}

// ready records that the flush of round is done, and queues what waited
// for it, up to the next ack that waits for a later round. It reports
// whether a writer must be started.
func (o *outbox) ready(round uint64) (start bool) {
	o.flushed = max(o.flushed, round)
	n := 0
	for ; n < len(o.waiting) && o.waiting[n].flush <= o.flushed; n++ {
		o.append(o.waiting[n])
	}
	if n == 0 {
		return false
	}
	rest := copy(o.waiting, o.waiting[n:])
	clear(o.waiting[rest:])
	o.waiting = o.waiting[:rest]
	if rest == 0 && cap(o.waiting) > spareMax {
		o.waiting = nil
	}
	return o.wake()
}

// closeAfter queues the marker that closes the socket with code and
// reason once what was queued before it is written. It reports as push.
func (o *outbox) closeAfter(code websocket.StatusCode, reason string) (start, full bool) {
	o.closeCode, o.closeReason = code, reason
	return o.push(outFrame{})
}

// pending is how many frames are queued, waiting or being written.
func (o *outbox) pending() int { return len(o.queue) + len(o.waiting) + o.writing }

// serve opens the socket to the writer, once it has its welcome and has
// caught up. It reports whether a writer must be started for what is
// queued.
func (o *outbox) serve() (start bool) {
	o.open = true
	return o.wake()
}

// end closes the socket to the writer: no writer starts any more.
func (o *outbox) end() { o.ended = true }

// wake reports whether a writer must be started, and counts it as started.
func (o *outbox) wake() bool {
	if o.writer || !o.open || o.ended || len(o.queue) == 0 {
		return false
	}
	o.writer = true
	return true
}

// take hands the writer what is queued. When nothing is, the writer ends
// (it returns nil).
func (o *outbox) take() []outFrame {
	batch := o.queue
	o.queue = nil
	o.writing = len(batch)
	if len(batch) == 0 {
		o.writer, o.spare = false, nil // idle: keep nothing
	}
	return batch
}

// wrote records that the writer has written batch, all of it.
func (o *outbox) wrote(batch []outFrame) {
	o.writing = 0
	if cap(batch) <= spareMax {
		clear(batch)
		o.spare = batch[:0]
	}
}

// failed records that the writer could not write rest (the tail of its
// batch), and has ended with the socket. What it could not write is held
// for a resume: before everything still queued.
func (o *outbox) failed(rest []outFrame) {
	o.writing, o.writer, o.ended = 0, false, true
	var unsent []outFrame
	for _, f := range rest {
		if f.frame != nil { // not closeAfter's marker
			unsent = append(unsent, f)
		}
	}
	if !o.holding {
		o.unsent = append(unsent, o.unsent...)
		return
	}
	held := make([]heldFrame, 0, len(unsent)+len(o.held))
	for _, f := range unsent {
		held = append(held, heldFrame{outFrame: f})
		o.heldBytes += len(f.frame)
	}
	o.held = append(held, o.held...)
}

// hold keeps f for the socket that will serve the session. ok is false if
// the session has moved on (or lost frames already); overflowed is true
// when f is more than the hold may keep: the session has lost frames now,
// and must end.
func (o *outbox) hold(f heldFrame) (ok, overflowed bool) {
	if o.taken || o.overflow {
		return false, false
	}
	if len(o.held) >= heldMaxFrames || o.heldBytes+len(f.frame) > heldMaxBytes {
		o.overflow = true
		o.held, o.heldBytes = nil, 0
		return false, true
	}
	o.held = append(o.held, f)
	o.heldBytes += len(f.frame)
	return true, false
}

// startHolding diverts frames from the queue to held, keeping first what
// the writer could not write, what is still queued and what waits for a
// flush (with its round: it still waits, wherever it goes on this gateway).
func (o *outbox) startHolding() {
	if o.holding {
		return
	}
	o.holding = true
	var queued []heldFrame
	for _, f := range o.unsent {
		queued = append(queued, heldFrame{outFrame: f})
	}
	o.unsent = nil
	for _, frames := range [][]outFrame{o.queue, o.waiting} {
		for _, f := range frames {
			if f.frame != nil { // not closeAfter's marker
				queued = append(queued, heldFrame{outFrame: f})
			}
		}
	}
	o.queue, o.waiting = nil, nil
	for _, f := range queued {
		o.heldBytes += len(f.frame)
	}
	o.held = append(queued, o.held...)
}

// startResync holds an open socket's frames for a resync, unless it is
// away, resuming or resyncing already (what holds it then repairs).
func (o *outbox) startResync() bool {
	if o.holding || o.taken {
		return false
	}
	o.holding = true
	return true
}

// stopHolding sends frames to the queue again.
func (o *outbox) stopHolding() { o.holding = false }

// release takes what is held, each delivery once: its last copy (a replay
// resends in order what came before it), and none already queued on this
// socket.
func (o *outbox) release() []heldFrame {
	batch := o.held
	o.held, o.heldBytes = nil, 0
	seen := make(map[string]bool, len(batch))
	keep := make([]bool, len(batch))
	n := 0
	for i := len(batch) - 1; i >= 0; i-- {
		id := batch[i].id
		if id != "" && (seen[id] || o.sent.has(id)) {
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

// hold again puts frames a catching-up socket could not write back before
// what is held.
func (o *outbox) holdAgain(frames []heldFrame) {
	o.held = append(frames[:len(frames):len(frames)], o.held...)
	o.heldBytes = 0
	for _, f := range o.held {
		o.heldBytes += len(f.frame)
	}
}

// prepend puts the frames another gateway handed over before what is held,
// dropping those held here too (seen holds their ids).
func (o *outbox) prepend(handed []heldFrame, seen map[string]bool) {
	for _, f := range o.held {
		if f.id == "" || !seen[f.id] {
			handed = append(handed, f)
		}
	}
	o.held, o.heldBytes = handed, 0
	for _, f := range handed {
		o.heldBytes += len(f.frame)
	}
}

// setGrace arms the end of the session's resume grace.
func (o *outbox) setGrace(t *time.Timer) { o.grace = t }

// finish marks the session as over and drops what it held. It reports
// whether it had moved on already.
func (o *outbox) finish() (wasTaken bool) {
	wasTaken = o.taken
	o.taken = true
	o.held = nil
	return wasTaken
}

// handOver lets the session go to a socket that resumed it and returns what
// was held for it, in order. ok is false if the session had already moved
// on. An ack still waiting for its flush goes too: the handover's reply
// leaves on this gateway's NATS connection after the signal it acks, so
// once the resuming gateway has the reply, the NATS server has the signal.
func (o *outbox) handOver() (frames []messages.HeldFrame, ok bool) {
	if o.taken {
		return nil, false
	}
	o.startHolding()
	o.taken = true
	if o.grace != nil {
		o.grace.Stop()
	}
	frames = make([]messages.HeldFrame, len(o.held))
	for i, f := range o.held {
		frames[i] = messages.HeldFrame{ID: f.id, Frame: f.frame}
	}
	o.held, o.heldBytes = nil, 0
	return frames, true
}
