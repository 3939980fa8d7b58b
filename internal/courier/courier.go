// Package courier sends NATS messages at least once to a subscriber that
// answers them. Core NATS is at most once: on a cluster, a subscription's
// interest reaches the other nodes asynchronously, and a publish made on a
// node that has not learnt of it yet, or while a route is being rebuilt, is
// dropped without a word. A courier publishes with a reply subject, and the
// subscriber's answer is the receipt; no answer (or the server's "no
// responders") means try again.
//
// Post publishes and returns at once, so a caller can publish several
// messages in order and then wait for their receipts; Send is Post, Wait
// and the retries in one call.
package courier

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors of one attempt. Both mean: the message may not have arrived.
var (
	// ErrNoResponders: the NATS server the courier is connected to knows of
	// no subscriber, now.
	ErrNoResponders = errors.New("courier: no responders")
	// ErrNoAnswer: no receipt came within the attempt's time.
	ErrNoAnswer = errors.New("courier: no answer")
)

// Courier publishes messages with reply subjects on its own inbox and
// routes the answers back to their tickets. It is safe for concurrent use.
type Courier struct {
	nc     *nats.Conn
	prefix string // the inbox subject, with a trailing '.'
	sub    *nats.Subscription

	mu      sync.Mutex
	next    uint64
	pending map[string]chan *nats.Msg // guarded by mu
}

// New subscribes to a fresh inbox of nc (nc's inbox prefix applies) and
// returns a courier using it.
func New(nc *nats.Conn) (*Courier, error) {
	c := &Courier{nc: nc, prefix: nc.NewInbox() + ".", pending: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(c.prefix+"*", c.answer)
	if err != nil {
		return nil, err
	}
	sub.SetPendingLimits(-1, -1) // receipts are small; never drop one
	c.sub = sub
	return c, nc.Flush()
}

// Close stops the courier; tickets still waiting get no answer.
func (c *Courier) Close() error { return c.sub.Unsubscribe() }

func (c *Courier) answer(m *nats.Msg) {
	token := m.Subject[len(c.prefix):]
	c.mu.Lock()
	ch := c.pending[token]
	delete(c.pending, token)
	c.mu.Unlock()
	if ch != nil {
		ch <- m // buffered, one answer per ticket
	}
}

// Ticket waits for the answer to one posted message.
type Ticket struct {
	c     *Courier
	token string
	ch    chan *nats.Msg
}

// Post publishes msg (its Reply is set to the ticket's inbox) and returns
// the ticket that waits for its answer. Messages posted one after another
// on one courier reach a subscriber in that order, like any publish.
func (c *Courier) Post(msg *nats.Msg) (*Ticket, error) {
	c.mu.Lock()
	c.next++
	t := &Ticket{c: c, token: strconv.FormatUint(c.next, 36), ch: make(chan *nats.Msg, 1)}
	c.pending[t.token] = t.ch
	c.mu.Unlock()
	msg.Reply = c.prefix + t.token
	if err := c.nc.PublishMsg(msg); err != nil {
		t.Cancel()
		return nil, err
	}
	return t, nil
}

// Wait waits up to d (and at most until ctx ends) for the answer. It
// returns ErrNoResponders or ErrNoAnswer when the message may be lost;
// either way the ticket is done.
func (t *Ticket) Wait(ctx context.Context, d time.Duration) (*nats.Msg, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m := <-t.ch:
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, ErrNoResponders
		}
		return m, nil
	case <-timer.C:
		t.Cancel()
		return nil, ErrNoAnswer
	case <-ctx.Done():
		t.Cancel()
		return nil, ctx.Err()
	}
}

// Cancel forgets the ticket: a late answer is dropped.
func (t *Ticket) Cancel() {
	t.c.mu.Lock()
	delete(t.c.pending, t.token)
	t.c.mu.Unlock()
}

// Backoff is the pause before try n (from 1) after the server said no
// responders: from 10 ms, doubling, at most 500 ms. (After ErrNoAnswer the
// attempt itself has waited.)
func Backoff(n int) time.Duration {
	return min(10*time.Millisecond<<min(max(n-1, 0), 6), 500*time.Millisecond)
}

// Send posts msg and waits for its answer, up to attempt per try, trying
// again until an answer comes or ctx ends. It returns the answer and how
// many times it tried. The subscriber may get msg more than once: it must
// drop repeats (by an id in the message).
func (c *Courier) Send(ctx context.Context, msg *nats.Msg, attempt time.Duration) (*nats.Msg, int, error) {
	for tries := 1; ; tries++ {
		t, err := c.Post(msg)
		var answer *nats.Msg
		if err == nil {
			answer, err = t.Wait(ctx, attempt)
			if err == nil {
				return answer, tries, nil
			}
		}
		if ctx.Err() != nil {
			return nil, tries, errors.Join(err, ctx.Err())
		}
		if !errors.Is(err, ErrNoAnswer) {
			select {
			case <-ctx.Done():
				return nil, tries, errors.Join(err, ctx.Err())
			case <-time.After(Backoff(tries)):
			}
		}
	}
}
