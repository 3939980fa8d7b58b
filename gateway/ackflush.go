package gateway

import (
	"sync"
	"time"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/messages"
)

// Acks of relayed signals. Publish only puts a signal into the NATS
// client's buffer; a gateway killed then loses it, and nobody is left to
// replay it (the sender's gateway keeps the replay, replay.go). So the ack
// of a signal waits until the NATS server has it: until the server has
// answered a PING sent after the signal on the same connection (a flush),
// which it does once it has processed everything sent before.
//
// One flush covers every signal published before it, on any connection of
// the gateway: relay hands its ack over with the number of the round it
// belongs to (request), and the flusher goroutine takes the round, flushes
// once and lets the round's connections send their acks (conn.flushed).
// While a flush is under way the next round gathers, so a busy gateway
// makes at most one flush per round trip to its NATS server, whatever the
// number of signals.
//
// A connection's frames keep their order: an ack waits in the outbox
// (outbox.waiting), and so does everything queued after it, until its round
// is flushed (outbox.ready).
//
// A flush that fails (the NATS connection is down, or slow beyond
// ackFlushTimeout) is tried again until one succeeds: the acks wait, as
// the signals do in the NATS client's reconnect buffer. When the link was
// cut meanwhile, the flush that succeeds on the new one confirms what was
// buffered while reconnecting, not what the dead link may have lost; the
// reconnect's resync (replay.go) repairs a call's signals.

// ackFlushTimeout bounds one flush; a flush that times out is tried again.
const ackFlushTimeout = time.Second

// ackFlusher batches the flushes that acks of relayed signals wait for.
// Safe for concurrent use.
type ackFlusher struct {
	s    *Server
	wake chan struct{} // a round has acks: capacity 1

	mu sync.Mutex
	// Guarded by mu.
	round uint64  // the round gathering acks now; rounds before it are flushed or being flushed
	conns []*conn // the connections with acks in round (each once: conn.ackRound)
	acks  int     // the acks in round, for the metric
}

func newAckFlusher(s *Server) *ackFlusher {
	return &ackFlusher{s: s, wake: make(chan struct{}, 1), round: 1}
}

// request registers an ack of c for a signal c has just published, and
// returns the round whose flush it waits for (outFrame.flush).
func (f *ackFlusher) request(c *conn) uint64 {
	f.mu.Lock()
	round := f.round
	if c.ackRound != round {
		c.ackRound = round
		f.conns = append(f.conns, c)
	}
	f.acks++
	f.mu.Unlock()
	f.s.metrics.acksWaiting.Inc()
	select {
	case f.wake <- struct{}{}:
	default: // the flusher is awake already
	}
	return round
}

// take closes the round that is gathering and returns it, with its
// connections and acks.
func (f *ackFlusher) take(conns []*conn) (round uint64, _ []*conn, acks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	round, acks = f.round, f.acks
	conns = append(conns, f.conns...)
	clear(f.conns)
	f.conns, f.acks = f.conns[:0], 0
	f.round++
	return round, conns, acks
}

// run flushes each round and releases its acks, until the gateway stops.
// A round whose flush failed joins the next one, flushed in one go.
func (f *ackFlusher) run() {
	var conns []*conn
	acks := 0
	for try := 0; ; {
		if try == 0 {
			select {
			case <-f.s.bg.Done():
				return
			case <-f.wake:
			}
		}
		round, more, n := f.take(conns)
		conns, acks = more, acks+n
		if len(conns) == 0 {
			continue
		}
		if err := f.flush(); err != nil {
			f.s.metrics.ackFlushFailed.Inc()
			f.s.log.Debug("ack flush", "acks", acks, "err", err)
			try++
			select {
			case <-f.s.bg.Done():
				return
			case <-time.After(courier.Backoff(try)):
			}
			continue
		}
		try = 0
		f.s.metrics.ackFlushed.Inc()
		f.s.metrics.acksWaiting.Sub(float64(acks))
		for _, c := range conns {
			c.flushed(round)
		}
		clear(conns)
		conns, acks = conns[:0], 0
	}
}

// flush waits until the NATS server has answered a PING sent now, for up
// to ackFlushTimeout. (FlushTimeout allocates less than FlushWithContext,
// which needs a context with a deadline for each flush; Shutdown may wait
// for one flush to time out.)
func (f *ackFlusher) flush() error {
	return f.s.nc.FlushTimeout(ackFlushTimeout)
}

// answerRelayed answers signal id, which c has relayed (err: it could not
// publish it): with an error, or, when id is set, with its ack naming call
// or room, sent once the NATS server has the signal. The frames queued
// after the ack wait with it.
func (c *conn) answerRelayed(id, call, room string, err error) {
	if err != nil {
		c.replyError(id, messages.CodeUnavailable, "relay failed; retry")
		return
	}
	c.s.metrics.relayed.Inc()
	if id != "" {
		c.enqueue(outFrame{frame: messages.Encode(messages.RoomAck(id, call, room)), flush: c.s.acks.request(c)})
	}
}

// flushed lets c send what waited for the flush of round (and of the
// rounds before it).
func (c *conn) flushed(round uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out.ready(round) {
		c.startWriter()
	}
}
