package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sender is one direction of a pair: a prebuilt frame whose stamp is
// rewritten in place for each send, so that sending allocates nothing.
// Owned by one scheduler worker.
type sender struct {
	from   *conn
	frame  []byte
	stamps []int // offsets of the stamp in frame: in data, and in the id (Options.Acked)
	seq    int64
}

// send stamps the frame with the next sequence number and sched, and writes it.
func (s *sender) send(sched time.Duration) error { return s.from.send(s.next(sched)) }

// next stamps the frame with the next sequence number and sched, and returns it.
func (s *sender) next(sched time.Duration) []byte {
	s.seq++
	for _, at := range s.stamps {
		putDigits(s.frame[at:at+seqDigits], s.seq)
		putDigits(s.frame[at+seqDigits+1:at+stampLen], int64(sched))
	}
	return s.frame
}

// newSender builds the frame from sends to its peer: a callmesh signal in
// call, or a PeerJS CANDIDATE to the peer's id, whose data is an ICE
// candidate padded to size bytes and ends with the stamp. With
// Options.Acked, the signal's id is the stamp too.
func (r *run) newSender(from, to *conn, call string) *sender {
	const head = `{"candidate":{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0 `
	const mid = `","sdpMid":"0","sdpMLineIndex":0},"bench":"`
	tail := strings.Repeat("0", seqDigits) + ":" + strings.Repeat("0", timeDigits) + `"}`
	pad := max(r.o.DataBytes-len(head)-len(mid)-len(tail), 0)
	data := head + strings.Repeat("x", pad) + mid + tail
	var prefix string
	var stamps []int
	switch {
	case r.o.Target == TargetPeerJS:
		dst, _ := json.Marshal(to.user)
		prefix = `{"type":"CANDIDATE","dst":` + string(dst) + `,"payload":`
	case r.o.Acked:
		head := `{"type":"signal","id":"`
		stamps = append(stamps, len(head))
		prefix = head + tail[:stampLen] + `","call":"` + call + `","data":`
	default:
		prefix = `{"type":"signal","call":"` + call + `","data":`
	}
	frame := []byte(prefix + data + "}")
	stamps = append(stamps, len(prefix)+len(data)-len(tail))
	return &sender{from: from, frame: frame, stamps: stamps}
}

// relay puts o.Pairs pairs in accepted calls (PeerJS: just connected) and
// has both sides of every pair send signals to each other at o.Rate in
// all, for each rate of the sweep: relay latency, loss, and server CPU
// per signal.
func (r *run) relay(ctx context.Context, rep *Report) error {
	o := r.o
	pairs, err := r.openPairs(ctx)
	if err != nil {
		return err
	}
	defer r.closePairs(pairs)
	if o.Target == TargetCallmesh {
		if err := r.setupCalls(ctx, pairs); err != nil {
			return err
		}
	}
	stopBeat := r.heartbeat(pairs)
	defer stopBeat()
	var senders []*sender
	for _, p := range pairs {
		senders = append(senders, r.newSender(p.caller, p.callee, p.call), r.newSender(p.callee, p.caller, p.call))
	}
	workers := min(4, len(senders))
	r.steps(ctx, rep, func(rate float64, step int) Result {
		return r.relayStep(ctx, pairs, senders, workers, rate, step)
	})
	if o.Target == TargetCallmesh {
		r.setProgress(func() string { return "relay: hanging up" })
		for _, p := range pairs {
			_ = p.caller.request(request{Type: "hangup", Call: p.call})
		}
	}
	return nil
}

// setupCalls establishes a call in every pair, 16 at a time.
func (r *run) setupCalls(ctx context.Context, pairs []*pair) error {
	var (
		done atomic.Int64
		mu   sync.Mutex
		fail string
	)
	r.setProgress(func() string { return fmt.Sprintf("relay: setting up calls %d/%d", done.Load(), len(pairs)) })
	parallel(ctx, 16, 0, len(pairs), func(i int) bool {
		call, _, reason := r.setupCall(pairs[i])
		if call == "" || reason != "" || r.errors.total() > 0 {
			mu.Lock()
			fail = cmpStr(fail, cmpStr(reason, "refused"))
			mu.Unlock()
			return false
		}
		pairs[i].call = call
		done.Add(1)
		return true
	})
	if fail != "" {
		return fmt.Errorf("bench: setting up the calls failed (%s); errors: %s", fail, formatErrors(r.errors.take()))
	}
	return ctx.Err()
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// heartbeat sends PeerJS's HEARTBEAT on every connection every 20 s, as
// its clients do (the server drops a peer silent for alive_timeout).
func (r *run) heartbeat(pairs []*pair) (stop func()) {
	if r.o.Target != TargetPeerJS {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, p := range pairs {
					_ = p.caller.send([]byte(`{"type":"HEARTBEAT"}`))
					_ = p.callee.send([]byte(`{"type":"HEARTBEAT"}`))
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// setRates sets the achieved rate, Ops over the measured time (at least
// measured, the schedule's), and the server's CPU per op and utilization
// from cpu, its CPU time over window.
func (res *Result) setRates(scheduled, measured, cpu, window time.Duration) {
	if measured > 0 {
		res.Achieved = float64(res.Ops) / max(measured.Seconds(), scheduled.Seconds())
	}
	if res.ServerPID != 0 && res.Ops > 0 {
		res.ServerCPUPerOpUs = float64(cpu) / float64(time.Microsecond) / float64(res.Ops)
		res.ServerCPUUtil = cpu.Seconds() / window.Seconds()
	}
}

// received is what the pairs' connections have received in all: relayed
// signals, and of those the repeats.
func received(pairs []*pair) (recv, dups int64) {
	for _, p := range pairs {
		recv += p.caller.recv.Load() + p.callee.recv.Load()
		dups += p.caller.dups.Load() + p.callee.dups.Load()
	}
	return recv, dups
}

// acked is how many acks of their signals the pairs' connections have
// received in all (Options.Acked).
func acked(pairs []*pair) (n int64) {
	for _, p := range pairs {
		n += p.caller.acks.Load() + p.callee.acks.Load()
	}
	return n
}

// relayStep sends at rate for o.Warmup + o.Duration, waits up to o.Drain
// for what is in flight, and measures the part after the warm-up.
func (r *run) relayStep(ctx context.Context, pairs []*pair, senders []*sender, workers int, rate float64, step int) Result {
	o := r.o
	r.errors.take()
	r.lat.reset()
	r.lag.reset()
	r.ack.reset()
	recv0, dups0 := received(pairs)
	acks0 := acked(pairs)
	var sent, sentMeasured atomic.Int64
	start := r.since() + 20*time.Millisecond
	measureFrom := start + o.Warmup
	end := measureFrom + o.Duration
	r.measureFrom.Store(int64(measureFrom))
	r.setProgress(func() string {
		recv, _ := received(pairs)
		phase := "measuring"
		if r.since() < measureFrom {
			phase = "warming up"
		}
		return fmt.Sprintf("relay step %d, %s/s, %s: sent %d, received %d, errors %d, %s",
			step, fmtRate(rate), phase, sent.Load(), recv-recv0, r.errors.total(), pct(r.lat.summary()))
	})

	var cpu0 procSample
	var wg sync.WaitGroup
	wg.Go(func() {
		r.sleepUntil(ctx, measureFrom)
		cpu0 = r.srv.sample()
	})
	mine := make([][]*sender, workers) // worker w's senders
	for i, s := range senders {
		mine[i%workers] = append(mine[i%workers], s)
	}
	next := make([]int, workers)
	var lastSend atomic.Int64
	r.schedule(ctx, workers, rate, start, end, func(w int, sched time.Duration) {
		s := mine[w][next[w]]
		next[w] = (next[w] + 1) % len(mine[w])
		if err := s.send(sched); err != nil {
			r.errors.add("send")
			return
		}
		sent.Add(1)
		if sched >= measureFrom {
			now := r.since()
			sentMeasured.Add(1)
			lastSend.Store(int64(now))
			r.lag.record(w, now-sched)
		}
	})
	wg.Wait()
	// Drain: wait for every signal sent, up to o.Drain.
	drainEnd := r.since() + o.Drain
	for r.since() < drainEnd && ctx.Err() == nil {
		recv, dups := received(pairs)
		if recv-recv0-(dups-dups0) >= sent.Load() && (!o.Acked || acked(pairs)-acks0 >= sent.Load()) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu1 := r.srv.sample()
	window := r.since() - measureFrom
	recv, dups := received(pairs)
	lag := r.lag.summary()
	res := Result{
		Target: o.Target, Scenario: ScenarioRelay, Step: step,
		Conns:     2 * len(pairs),
		Rate:      rate,
		Ops:       sentMeasured.Load(),
		DurationS: o.Duration.Seconds(),
		Latency:   r.lat.summary(),
		SendLag:   &lag,
		Errors:    r.errors.take(),
		Lost:      max(sent.Load()-(recv-recv0-(dups-dups0)), 0),
		Dups:      dups - dups0,
		ServerPID: r.srv.pid,
	}
	if o.Acked {
		ack := r.ack.summary()
		res.Ack = &ack
		res.AcksLost = max(sent.Load()-(acked(pairs)-acks0), 0)
	}
	res.setRates(o.Duration, time.Duration(lastSend.Load())-measureFrom, cpu1.cpu-cpu0.cpu, window)
	res.Pass = res.Latency.P99 <= ms(o.MaxP99) && res.Lost == 0 && res.AcksLost == 0 && res.Dups == 0 && sum(res.Errors) == 0 && res.Latency.Count > 0
	return res
}
