package meshtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// BenchmarkCallSetup measures invite → incoming on another gateway, through
// two routers, one call at a time, and reports its p50 and p99.
func BenchmarkCallSetup(b *testing.B) {
	m := Start(b, Options{Gateway: NoRateLimits})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "b", To: "bob"})
		in := bob.Expect(messages.TypeIncoming)
		lat = append(lat, time.Since(start))
		alice.ExpectAck("b")
		alice.Expect(messages.TypeRinging)
		alice.Do(messages.TypeHangup, in.Call)
		bob.ExpectEnded(in.Call, messages.ReasonCancelled)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSignalRelay measures sustained signal throughput from a
// connection on one gateway to its peer on another, with at most 64 signals
// in flight (an unpaced flood fills the receiver's send queue, which closes
// it with 4003 by design), and the process's CPU time per signal (the whole
// mesh, routers and NATS server included, and both clients).
func BenchmarkSignalRelay(b *testing.B) { benchRelay(b, false) }

// BenchmarkSignalRelayAcked is BenchmarkSignalRelay with an id on every
// signal, so each is acked too (at most 64 acks in flight as well), once
// NATS has it: it also reports the NATS flushes the acks waited for, per
// signal (one flush covers every signal published before it).
func BenchmarkSignalRelayAcked(b *testing.B) { benchRelay(b, true) }

func benchRelay(b *testing.B, acked bool) {
	id := ""
	if acked {
		id = "s"
	}
	m, alice, bob, frame := relayPair(b, NoRateLimits, id)
	flushes := startFlushes(m)
	window, ackWindow := make(chan struct{}, 64), make(chan struct{}, 64)
	cpu := startCPU(b)
	signals := inBackground(b.N, func() { bob.Expect(messages.TypeSignal) }, window)
	acks := inBackground(0, nil, nil)
	if acked {
		acks = inBackground(b.N, func() { alice.ExpectAck(id) }, ackWindow)
	}
	for i := 0; i < b.N; i++ {
		window <- struct{}{}
		if acked {
			ackWindow <- struct{}{}
		}
		alice.SendRaw(frame)
	}
	<-signals
	<-acks
	cpu.report()
	flushes.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
}

// BenchmarkSignalRelayPaced sends signals across gateways at 10 000/s,
// on a schedule (not waiting for them to arrive), and reports the CPU time
// per signal: at a rate the mesh keeps up with, goroutines park and wake for
// each signal, which a flood (BenchmarkSignalRelay) hides.
func BenchmarkSignalRelayPaced(b *testing.B) { benchRelayPaced(b, false) }

// BenchmarkSignalRelayPacedAcked is BenchmarkSignalRelayPaced with an id
// on every signal, so each is acked once NATS has it. Signals 100 µs apart
// from one connection rarely share a flush: this is the acks' dearest case.
func BenchmarkSignalRelayPacedAcked(b *testing.B) { benchRelayPaced(b, true) }

func benchRelayPaced(b *testing.B, acked bool) {
	const rate = 10_000
	id := ""
	if acked {
		id = "s"
	}
	m, alice, bob, frame := relayPair(b, func(c *gateway.Config) {
		NoRateLimits(c)
		c.SendQueue = 4096 // a stall of the machine must not close bob (4003): this is not about slow clients
	}, id)
	flushes := startFlushes(m)
	cpu := startCPU(b)
	signals := inBackground(b.N, func() { bob.Expect(messages.TypeSignal) }, nil)
	acks := inBackground(0, nil, nil)
	if acked {
		acks = inBackground(b.N, func() { alice.ExpectAck(id) }, nil)
	}
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * time.Second / rate)); wait > 0 {
			time.Sleep(wait)
		}
		alice.SendRaw(frame)
	}
	<-signals
	<-acks
	cpu.report()
	flushes.report(b)
}

// relayPair starts a mesh with the gateway settings gw and returns it with
// alice and bob, in an accepted call across the two gateways, and the
// frame of a signal of alice's with an ICE candidate (and id, unless "").
func relayPair(b *testing.B, gw func(*gateway.Config), id string) (m *Mesh, alice, bob *Client, frame []byte) {
	m = Start(b, Options{Gateway: gw})
	alice, bob = m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	frame = messages.Encode(&messages.Envelope{Type: messages.TypeSignal, ID: id, Call: call,
		Data: json.RawMessage(`{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0"}`)})
	return m, alice, bob, frame
}

// flushCount counts the NATS flushes that acks of relayed signals waited
// for, on every gateway of a mesh, from its start.
type flushCount struct {
	m     *Mesh
	start float64
}

func startFlushes(m *Mesh) flushCount {
	return flushCount{m: m, start: flushesOf(m)}
}

func flushesOf(m *Mesh) float64 {
	n := 0.0
	for _, g := range m.Gateways {
		n += g.Counter("callmesh_gateway_ack_flushes_total")
	}
	return n
}

// report reports the flushes per operation since the start.
func (f flushCount) report(b *testing.B) {
	b.ReportMetric((flushesOf(f.m)-f.start)/float64(b.N), "flushes/op")
}

// inBackground runs expect n times on another goroutine, taking a place of
// window (if not nil) after each, and closes the channel it returns when
// done.
func inBackground(n int, expect func(), window chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			expect()
			if window != nil {
				<-window
			}
		}
	}()
	return done
}

// cpuMeter measures the process's CPU time (user and system) from the
// benchmark's timer reset, for a per-operation figure that does not depend
// on how busy the machine is, as wall time does.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
}

// startCPU resets b's timer and starts measuring CPU time.
func startCPU(b *testing.B) *cpuMeter {
	b.ResetTimer()
	return &cpuMeter{b: b, start: processCPU(b)}
}

// report reports the CPU time per operation since startCPU, in µs.
func (m *cpuMeter) report() {
	used := processCPU(m.b) - m.start
	m.b.ReportMetric(float64(used.Microseconds())/float64(m.b.N), "cpu-µs/op")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkResume measures a resume on the other gateway in the middle of a
// call: from the reconnect to the resumed welcome (which includes the
// presence takeover, the old gateway's handover and the router's list of
// calls), and reports its p50 and p99.
func BenchmarkResume(b *testing.B) {
	m := Start(b, Options{ResumeGrace: time.Minute, Gateway: NoRateLimits})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		alice.Drop()
		start := time.Now()
		again := m.Resume((i+1)%2, alice)
		lat = append(lat, time.Since(start))
		if !again.Welcome.Resumed || len(again.Welcome.Calls) != 1 {
			b.Fatalf("resume %d: %+v", i, again.Welcome)
		}
		alice = again
	}
	b.StopTimer()
	bob.Signal(call, 1)
	alice.ExpectSignal(call, 1)
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// duringFlood runs op b.N times, one every pace (so that op's client stays
// within the message rate), while ten other connections flood the gateways
// as in TestFlood, with the shipped limits, and reports the p50 and p99 of
// what op measured.
func duringFlood(b *testing.B, m *Mesh, every time.Duration, op func(i int) time.Duration) {
	f := m.startFlood(10)
	natstest.WaitFor(b, "the flood under way", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, st := range f.flooders {
			if st.frames < 100 {
				return fmt.Errorf("%s: %s", st.user, st)
			}
		}
		return nil
	})
	pace := time.NewTicker(every)
	defer pace.Stop()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-pace.C
		lat = append(lat, op(i))
	}
	b.StopTimer()
	f.stopFlood()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSignalDuringFlood measures a signal from alice to bob, on
// another gateway, one every 25 ms, during the flood of issue 10
// (duringFlood).
func BenchmarkSignalDuringFlood(b *testing.B) {
	m := Start(b, Options{ResumeGrace: 10 * time.Second, Gateway: shippedLimits})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	duringFlood(b, m, 25*time.Millisecond, func(i int) time.Duration {
		start := time.Now()
		alice.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		bob.ExpectSignal(call, i)
		return time.Since(start)
	})
}

// BenchmarkCallSetupDuringFlood measures invite → incoming on another
// gateway, one call every 50 ms (two messages each), during the flood of
// issue 10 (duringFlood); each call is then cancelled.
func BenchmarkCallSetupDuringFlood(b *testing.B) {
	m := Start(b, Options{ResumeGrace: 10 * time.Second, Gateway: func(c *gateway.Config) {
		shippedLimits(c)
		NoInviteLimit(c)
	}})
	carol, dave := m.Dial(0, "carol"), m.Dial(1, "dave")
	duringFlood(b, m, 50*time.Millisecond, func(int) time.Duration {
		start := time.Now()
		carol.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "b", To: "dave"})
		in := dave.Expect(messages.TypeIncoming)
		took := time.Since(start)
		carol.ExpectAck("b")
		carol.Expect(messages.TypeRinging)
		carol.Do(messages.TypeHangup, in.Call)
		dave.ExpectEnded(in.Call, messages.ReasonCancelled)
		return took
	})
}
