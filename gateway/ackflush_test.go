package gateway

import (
	"slices"
	"testing"
)

// frameNames lists the frames' bytes, in order.
func frameNames(frames []outFrame) []string {
	var names []string
	for _, f := range frames {
		names = append(names, string(f.frame))
	}
	return names
}

// heldNames lists the held frames' bytes, in order.
func heldNames(frames []heldFrame) []string {
	var names []string
	for _, f := range frames {
		names = append(names, string(f.frame))
	}
	return names
}

// An ack waits for its flush round, everything queued after it waits with
// it, and a flush lets out what waited up to the next ack of a later round:
// the client sees its frames in the order they were queued.
func TestAckWaitsForItsFlushInOrder(t *testing.T) {
	o := outbox{max: 16}
	o.serve()
	push := func(name string, round uint64) {
		t.Helper()
		if _, full := o.push(outFrame{frame: []byte(name), flush: round}); full {
			t.Fatalf("push %s: full", name)
		}
	}
	push("signal-before", 0)
	push("ack-1", 1)
	push("pong-after-ack-1", 0)
	push("ack-2", 2)
	push("delivery-after-ack-2", 0)
	if got, want := frameNames(o.queue), []string{"signal-before"}; !slices.Equal(got, want) {
		t.Fatalf("queued before any flush: %q, want %q", got, want)
	}
	if o.pending() != 5 {
		t.Fatalf("pending %d, want 5 (waiting frames count toward the send queue)", o.pending())
	}
	o.ready(1)
	if got, want := frameNames(o.queue), []string{"signal-before", "ack-1", "pong-after-ack-1"}; !slices.Equal(got, want) {
		t.Fatalf("queued after flush 1: %q, want %q", got, want)
	}
	o.ready(3) // a later round covers the earlier ones
	push("ack-3", 3)
	push("ack-4", 4)
	if got, want := frameNames(o.queue), []string{"signal-before", "ack-1", "pong-after-ack-1", "ack-2", "delivery-after-ack-2", "ack-3"}; !slices.Equal(got, want) {
		t.Fatalf("queued after flush 3: %q, want %q", got, want)
	}
	if got, want := frameNames(o.waiting), []string{"ack-4"}; !slices.Equal(got, want) {
		t.Fatalf("waiting: %q, want %q", got, want)
	}
}

// A session held for a resume keeps what waited for a flush, after what
// was queued, and with its round: released to a socket of this gateway,
// it still waits.
func TestHeldAckKeepsWaiting(t *testing.T) {
	o := outbox{max: 16}
	o.push(outFrame{frame: []byte("queued")})
	o.push(outFrame{frame: []byte("ack"), flush: 1})
	o.push(outFrame{frame: []byte("after")})
	o.startHolding()
	if got, want := heldNames(o.held), []string{"queued", "ack", "after"}; !slices.Equal(got, want) {
		t.Fatalf("held %q, want %q", got, want)
	}
	o.stopHolding()
	for _, f := range o.release() {
		o.push(f.outFrame)
	}
	if got, want := frameNames(o.queue), []string{"queued"}; !slices.Equal(got, want) {
		t.Fatalf("queued again before the flush: %q, want %q", got, want)
	}
	o.ready(1)
	if got, want := frameNames(o.queue), []string{"queued", "ack", "after"}; !slices.Equal(got, want) {
		t.Fatalf("queued after the flush: %q, want %q", got, want)
	}
}
