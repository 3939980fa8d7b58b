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
// receiver reads back is the one written.
func TestSenderFrames(t *testing.T) {
	for _, target := range []string{TargetCallmesh, TargetPeerJS} {
		r := &run{o: &Options{Target: target, DataBytes: 300}}
		s := r.newSender(&conn{user: "a"}, &conn{user: "b.c"}, "CALL")
		for seq, sched := range []time.Duration{0, 1234567 * time.Microsecond, 100 * time.Hour} {
			s.seq = int64(seq) * 999999
			putDigits(s.frame[s.stamp:s.stamp+seqDigits], s.seq+1)
			putDigits(s.frame[s.stamp+seqDigits+1:s.stamp+stampLen], int64(sched))
			var f struct {
				Type, Call, Dst string
				Data, Payload   json.RawMessage
			}
			if err := json.Unmarshal(s.frame, &f); err != nil {
				t.Fatalf("%s: %v: %s", target, err, s.frame)
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
			stamp := s.frame[s.stamp : s.stamp+stampLen]
			if parseDigits(stamp[:seqDigits]) != s.seq+1 || time.Duration(parseDigits(stamp[seqDigits+1:])) != sched {
				t.Errorf("%s: stamp %s, want %d and %d", target, stamp, s.seq+1, sched)
			}
		}
	}
}
