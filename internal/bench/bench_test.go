package bench

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestSweepRates(t *testing.T) {
	o := Options{Rate: 2000, Sweep: true, SweepFactor: 1.5, SweepSteps: 6}
	if got, want := o.sweepRates(), []float64{2000, 3000, 4500, 6800, 10000, 15000}; !slices.Equal(got, want) {
		t.Errorf("sweep rates %v, want %v", got, want)
	}
	o.Sweep = false
	if got := o.sweepRates(); !slices.Equal(got, []float64{2000}) {
		t.Errorf("without a sweep: %v", got)
	}
}

// TestSenderFrames: every frame a sender writes is valid JSON of the
// target's protocol, its data has the size asked for, and the stamp the
// receiver reads back is the one written (in the id too, when acked: the
// ack echoes it).
func TestSenderFrames(t *testing.T) {
	for _, o := range []Options{{Target: TargetCallmesh}, {Target: TargetCallmesh, Acked: true}, {Target: TargetPeerJS}} {
		target := o.Target
		o.DataBytes = 300
		r := &run{o: &o}
		s := r.newSender(&conn{user: "a"}, &conn{user: "b.c"}, "CALL")
		for seq, sched := range []time.Duration{0, 1234567 * time.Microsecond, 100 * time.Hour} {
			s.seq = int64(seq) * 999999
			frame := s.next(sched)
			var f struct {
				Type, Call, Dst, ID string
				Data, Payload       json.RawMessage
			}
			if err := json.Unmarshal(frame, &f); err != nil {
				t.Fatalf("%s: %v: %s", target, err, frame)
			}
			if o.Acked != (f.ID != "") {
				t.Errorf("%s (acked %v): id %q", target, o.Acked, f.ID)
			}
			if o.Acked && (f.ID != string(s.frame[s.stamps[0]:s.stamps[0]+stampLen]) || !isStampID([]byte(f.ID+`"`))) {
				t.Errorf("id %q is not the stamp", f.ID)
			}
			data := f.Data
			if target == TargetPeerJS {
				data = f.Payload
				if f.Type != "CANDIDATE" || f.Dst != "b.c" {
					t.Errorf("peerjs frame %s", s.frame)
				}
			} else if f.Type != "signal" || f.Call != "CALL" {
				t.Errorf("callmesh frame %s", s.frame)
			}
			if len(data) != 300 {
				t.Errorf("%s: data of %d bytes, want 300", target, len(data))
			}
			for _, at := range s.stamps {
				stamp := frame[at : at+stampLen]
				if parseDigits(stamp[:seqDigits]) != s.seq || time.Duration(parseDigits(stamp[seqDigits+1:])) != sched {
					t.Errorf("%s: stamp %s, want %d and %d", target, stamp, s.seq, sched)
				}
			}
		}
	}
}

// Only the acks of signals sent with an id are taken for them: not those of
// the requests that set the calls up.
func TestStampIDs(t *testing.T) {
	for id, want := range map[string]bool{
		"000000000001:0000000001234567890":  true,
		"invite-1":                          false,
		"000000000001:00000000012345678x0":  false,
		"000000000001:0000000001234567890x": false,
		"0000000000010000000001234567890x":  false,
	} {
		if got := isStampID([]byte(id + `","call":"C"}`)); got != want {
			t.Errorf("isStampID(%q) = %v, want %v", id, got, want)
		}
	}
}
