package gateway

import (
	"slices"
	"strconv"
	"testing"
)

func TestSentRingKeepsTheNewest(t *testing.T) {
	var r sentRing
	for i := range sentMaxFrames + 10 {
		r.add([]byte(strconv.Itoa(i)))
	}
	if len(r.frames) != sentMaxFrames || string(r.frames[0]) != "10" {
		t.Fatalf("ring holds %d frames from %q; want %d from \"10\"", len(r.frames), r.frames[0], sentMaxFrames)
	}
	big := make([]byte, sentMaxBytes/2+1)
	r.add(big)
	r.add(big)
	if len(r.frames) != 1 || r.bytes != len(big) {
		t.Fatalf("ring over its byte bound: %d frames, %d bytes", len(r.frames), r.bytes)
	}
}

// release keeps the last copy of each delivery (a replay resends, complete
// and in order, what came before it), keeps frames without an id, and drops
// what the socket already has.
func TestReleaseKeepsLastCopies(t *testing.T) {
	var o outbox
	o.sent.add("s1")
	for _, id := range []string{"s1", "s2", "", "s3", "s2", "s3", "s4", ""} {
		o.held = append(o.held, heldFrame{outFrame: outFrame{id: id, frame: []byte(id + "!")}})
	}
	var got []string
	for _, f := range o.release() {
		got = append(got, string(f.frame))
	}
	if want := []string{"!", "s2!", "s3!", "s4!", "!"}; !slices.Equal(got, want) {
		t.Fatalf("released %q, want %q", got, want)
	}
	if len(o.held) != 0 {
		t.Fatalf("still held: %d", len(o.held))
	}
}
