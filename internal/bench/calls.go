package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// calls has o.Pairs pairs run whole call cycles (invite → incoming →
// accept → accepted → hangup → ended), with calls scheduled at o.Rate in
// all: a scheduled call waits for an idle pair, and its latencies count
// from its scheduled time. Ring latency is scheduled → incoming at the
// callee, setup latency scheduled → accepted at the caller.
func (r *run) calls(ctx context.Context, rep *Report) error {
	pairs, err := r.openPairs(ctx)
	if err != nil {
		return err
	}
	defer r.closePairs(pairs)
	r.steps(ctx, rep, func(rate float64, step int) Result {
		return r.callsStep(ctx, pairs, rate, step)
	})
	return nil
}

// callsStep schedules calls at rate for o.Warmup + o.Duration and
// measures those scheduled after the warm-up.
func (r *run) callsStep(ctx context.Context, pairs []*pair, rate float64, step int) Result {
	o := r.o
	r.errors.take()
	r.lat.reset()
	r.ring.reset()
	start := r.since() + 20*time.Millisecond
	measureFrom := start + o.Warmup
	end := measureFrom + o.Duration
	r.measureFrom.Store(int64(measureFrom))

	queue := make(chan time.Duration, min(int(rate*(o.Warmup+o.Duration).Seconds())+1, 1<<20))
	var (
		completed, failed, started atomic.Int64
		abandon                    atomic.Bool // drain the queue without calling
		lastDone                   atomic.Int64
	)
	r.setProgress(func() string {
		phase := "measuring"
		if r.since() < measureFrom {
			phase = "warming up"
		}
		return fmt.Sprintf("calls step %d, %s/s, %s: started %d, completed %d, failed %d, waiting %d, errors %d, setup %s",
			step, fmtRate(rate), phase, started.Load(), completed.Load(), failed.Load(), len(queue), r.errors.total(), pct(r.lat.summary()))
	})
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Go(func() {
			for sched := range queue {
				measured := sched >= measureFrom
				if abandon.Load() {
					if measured {
						failed.Add(1)
					}
					r.errors.add("backlog")
					continue
				}
				started.Add(1)
				if r.cycle(p, sched, measured) {
					if measured {
						completed.Add(1)
						lastDone.Store(int64(r.since()))
					}
				} else if measured {
					failed.Add(1)
				}
			}
		})
	}
	var cpu0 procSample
	var cw sync.WaitGroup
	cw.Go(func() {
		r.sleepUntil(ctx, measureFrom)
		cpu0 = r.srv.sample()
	})
	r.schedule(ctx, 1, rate, start, end, func(_ int, sched time.Duration) {
		select {
		case queue <- sched:
		default:
			r.errors.add("backlog")
			if sched >= measureFrom {
				failed.Add(1)
			}
		}
	})
	close(queue)
	cw.Wait()
	// Calls still queued after the drain (and the timeouts of those in
	// progress) were never started in time: the rate was not sustained.
	stopAt := time.AfterFunc(o.Drain+3*o.Timeout, func() { abandon.Store(true) })
	wg.Wait()
	stopAt.Stop()
	cpu1 := r.srv.sample()
	window := r.since() - measureFrom
	ring := r.ring.summary()
	res := Result{
		Target: o.Target, Scenario: ScenarioCalls, Step: step,
		Conns:     2 * len(pairs),
		Rate:      rate,
		Ops:       completed.Load(),
		DurationS: o.Duration.Seconds(),
		Latency:   r.lat.summary(),
		Ring:      &ring,
		Errors:    r.errors.take(),
		Failed:    failed.Load(),
		ServerPID: r.srv.pid,
	}
	res.setRates(o.Duration, time.Duration(lastDone.Load())-measureFrom, cpu1.cpu-cpu0.cpu, window)
	res.Pass = res.Latency.P99 <= ms(o.MaxP99) && res.Failed == 0 && sum(res.Errors) == 0 && res.Ops > 0
	return res
}

// cycle runs one whole call in p, scheduled at sched, and reports whether
// it completed. Latencies are recorded when measured.
func (r *run) cycle(p *pair, sched time.Duration, measured bool) bool {
	call, t, fail := r.setupCall(p)
	if t.incoming != 0 && measured {
		r.ring.record(p.idx, t.incoming-sched)
	}
	if t.accepted != 0 && measured {
		r.lat.record(p.idx, t.accepted-sched)
	}
	if t.accepted == 0 {
		if fail != "" {
			r.errors.add(fail)
		}
		if call != "" { // end it, so that both are free for the next call
			_ = p.caller.request(request{Type: "hangup", Call: call})
		}
		return false
	}
	if fail := r.hangupCall(p, call); fail != "" {
		r.errors.add(fail)
		return false
	}
	return true
}
