package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// connect opens o.Conns idle authenticated connections, o.Dialers at a
// time, spread over the gateways and the source addresses: connect rate,
// welcome latency, and the server's memory per connection. A sweep opens
// them in steps (an eighth, a quarter, a half, all), keeping the earlier
// ones open, so each step shows the cost at that many connections; every
// step runs, whether or not the one before met the criterion.
func (r *run) connect(ctx context.Context, rep *Report) error {
	o := r.o
	targets := []int{o.Conns}
	if o.Sweep {
		targets = nil
		for _, d := range []int{8, 4, 2, 1} {
			if n := o.Conns / d; n > 0 && (len(targets) == 0 || n > targets[len(targets)-1]) {
				targets = append(targets, n)
			}
		}
	}
	r.setProgress(func() string { return "connect: getting tokens" })
	tokens, err := r.tokens(ctx, 0, o.Conns)
	if err != nil {
		return err
	}
	before := r.srv.sample()
	conns := make([]*conn, 0, o.Conns)
	defer func() { r.closeAll(conns) }()
	var failedTotal int
	for step, n := range targets {
		r.errors.take()
		r.lat.reset()
		from := len(conns) + failedTotal
		var (
			done   atomic.Int64
			failed atomic.Int64
			mu     sync.Mutex
			opened []*conn
		)
		total := n - len(conns)
		r.setProgress(func() string {
			return fmt.Sprintf("connect step %d: %d/%d welcomed, %d failed, %s", step+1, done.Load(), total, failed.Load(), pct(r.lat.summary()))
		})
		start := time.Now()
		parallel(ctx, o.Dialers, from, from+total, func(i int) bool {
			c, took, reason := r.open(ctx, i, r.dialURL(ctx, i, i, tokens[i]))
			if c == nil {
				failed.Add(1)
				if reason != "refused" {
					r.errors.add(reason)
				}
				return true
			}
			done.Add(1)
			r.lat.record(i, took)
			mu.Lock()
			opened = append(opened, c)
			mu.Unlock()
			return true
		})
		elapsed := time.Since(start)
		conns = append(conns, opened...)
		failedTotal += int(failed.Load())
		if ctx.Err() != nil {
			return nil
		}
		r.setProgress(func() string { return fmt.Sprintf("connect step %d: settling %s", step+1, o.Settle) })
		r.sleepUntil(ctx, r.since()+o.Settle)
		after := r.srv.sample()
		res := Result{
			Target: o.Target, Scenario: ScenarioConnect, Step: step + 1,
			Conns:     len(conns),
			Ops:       done.Load(),
			Achieved:  float64(done.Load()) / elapsed.Seconds(),
			DurationS: elapsed.Seconds(),
			Latency:   r.lat.summary(),
			Errors:    r.errors.take(),
			Failed:    failed.Load(),
			ServerPID: r.srv.pid,
		}
		if r.srv.pid != 0 && len(conns) > 0 {
			res.ServerRSSMiB = float64(after.rss) / (1 << 20)
			res.ServerRSSPerConnKiB = float64(after.rss-before.rss) / float64(len(conns)) / 1024
		}
		res.Pass = res.Latency.P99 <= ms(o.MaxP99) && res.Failed == 0 && sum(res.Errors) == 0
		rep.Steps = append(rep.Steps, res)
	}
	if o.Hold > 0 {
		r.setProgress(func() string { return fmt.Sprintf("connect: holding %d connections for %s", len(conns), o.Hold) })
		r.sleepUntil(ctx, r.since()+o.Hold)
	}
	r.setProgress(func() string { return fmt.Sprintf("connect: closing %d connections", len(conns)) })
	return nil
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
