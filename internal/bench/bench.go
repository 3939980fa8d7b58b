// Package bench is the load generator of `callmesh bench`: real WebSocket
// clients that open connections, make calls and relay signals against
// callmesh gateways (or, for comparison, a PeerJS server) on an open-loop
// schedule, and report latency percentiles, errors, and the server's
// memory and CPU per unit of work when it runs on this machine.
//
// Latencies are measured from the time an operation was scheduled, not
// from when the generator got round to it, so a server (or generator) that
// falls behind shows up in the percentiles instead of slowing the load.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Targets: which server's wire protocol to speak.
const (
	TargetCallmesh = "callmesh"
	TargetPeerJS   = "peerjs"
)

// Scenarios.
const (
	ScenarioConnect = "connect"
	ScenarioCalls   = "calls"
	ScenarioRelay   = "relay"
)

// TokenFunc returns a callmesh access token for user.
type TokenFunc func(ctx context.Context, user string) (string, error)

// Options shapes a run. Zero fields take the defaults of DefaultOptions.
type Options struct {
	Target   string   // TargetCallmesh or TargetPeerJS
	Scenario string   // ScenarioConnect, ScenarioCalls or ScenarioRelay
	URLs     []string // WebSocket URLs: callmesh gateways' /ws, or PeerJS's /peerjs
	Token    TokenFunc

	Conns       int     // connect: connections to open
	Dialers     int     // connect: dials in flight at once
	Sources     int     // loopback source addresses to dial from (127.0.0.1 … 127.0.0.N)
	Pairs       int     // calls, relay: pairs of connections
	Rate        float64 // calls, relay: target aggregate rate per second
	DataBytes   int     // relay: bytes of each signal's data
	Acked       bool    // relay (callmesh): each signal has an id, so the gateway acks it
	Duration    time.Duration
	Warmup      time.Duration // calls, relay: run before measuring, in each step
	Drain       time.Duration // how long to wait for what is in flight after the schedule ends
	Timeout     time.Duration // one step of a call, one dial
	Settle      time.Duration // connect: wait before reading the server's memory
	Hold        time.Duration // connect: keep the connections open this long at the end
	Sweep       bool          // step the rate (connect: the connections) up until the criterion fails
	SweepFactor float64       // each step's rate is the last one's times this
	SweepSteps  int           // at most this many rates
	// SweepRetries is how many times a sweep runs a rate again that
	// missed the criterion before it stops: on a shared machine one step
	// can miss it for reasons of the machine's.
	SweepRetries int
	MaxP99       time.Duration // the criterion: p99 at most this, and no errors or losses
	PID          int           // the server's process; 0: found by the first URL's port when local

	// Progress, when set, gets a live status line (with \r) twice a second.
	Progress io.Writer
}

// DefaultOptions are the defaults of every field of Options.
func DefaultOptions() Options {
	return Options{
		Target:      TargetCallmesh,
		Scenario:    ScenarioRelay,
		Conns:       1000,
		Dialers:     64,
		Sources:     8,
		Pairs:       200,
		Rate:        1000,
		DataBytes:   256,
		Duration:    10 * time.Second,
		Warmup:      time.Second,
		Drain:       2 * time.Second,
		Timeout:     5 * time.Second,
		Settle:      time.Second,
		SweepFactor: 1.5,
		SweepSteps:  20,
		MaxP99:      50 * time.Millisecond,
	}
}

func (o *Options) setDefaults() {
	d := DefaultOptions()
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if o.Target == "" {
		o.Target = d.Target
	}
	if o.Scenario == "" {
		o.Scenario = d.Scenario
	}
	set(&o.Conns, d.Conns)
	set(&o.Dialers, d.Dialers)
	set(&o.Sources, d.Sources)
	set(&o.Pairs, d.Pairs)
	set(&o.DataBytes, d.DataBytes)
	set(&o.SweepSteps, d.SweepSteps)
	if o.Rate == 0 {
		o.Rate = d.Rate
	}
	if o.SweepFactor <= 1 {
		o.SweepFactor = d.SweepFactor
	}
	setD(&o.Duration, d.Duration)
	setD(&o.Drain, d.Drain)
	setD(&o.Timeout, d.Timeout)
	setD(&o.MaxP99, d.MaxP99)
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Settle < 0 {
		o.Settle = 0
	}
}

func (o *Options) validate() error {
	switch o.Target {
	case TargetCallmesh, TargetPeerJS:
	default:
		return fmt.Errorf("bench: unknown target %q (callmesh or peerjs)", o.Target)
	}
	switch o.Scenario {
	case ScenarioConnect, ScenarioRelay:
	case ScenarioCalls:
		if o.Target == TargetPeerJS {
			return errNoCalls
		}
	default:
		return fmt.Errorf("bench: unknown scenario %q (connect, calls or relay)", o.Scenario)
	}
	if len(o.URLs) == 0 {
		return errors.New("bench: no URL")
	}
	if o.Target == TargetCallmesh && o.Token == nil {
		return errors.New("bench: no way to get tokens")
	}
	if o.Acked && (o.Target != TargetCallmesh || o.Scenario != ScenarioRelay) {
		return errors.New("bench: --acked is for the relay scenario against callmesh")
	}
	if o.Conns < 1 || o.Pairs < 1 || o.Rate <= 0 || o.DataBytes < 64 {
		return errors.New("bench: conns and pairs must be at least 1, rate above 0, data bytes at least 64")
	}
	return nil
}

// Result is one measured step of a run.
type Result struct {
	Target   string `json:"target"`
	Scenario string `json:"scenario"`
	Step     int    `json:"step"` // 1, 2, … in a sweep; 1 otherwise
	// Conns is the connections open during the step.
	Conns int `json:"conns"`
	// Rate is the target rate of calls or signals per second (connect: 0).
	Rate float64 `json:"rate"`
	// Achieved is what was done per second: connections welcomed per second
	// of dialing, calls completed or signals sent per measured second.
	Achieved  float64 `json:"achieved_rate"`
	Ops       int64   `json:"ops"` // connections welcomed, calls completed, signals sent (measured)
	DurationS float64 `json:"duration_s"`
	// Latency is the welcome (connect), setup (calls: scheduled →
	// accepted) or relay (scheduled send → receipt) latency.
	Latency Percentiles `json:"latency"`
	// Ring is, for calls, scheduled → incoming at the callee.
	Ring *Percentiles `json:"ring,omitempty"`
	// SendLag is, for relay, scheduled → written to the socket: the
	// generator's own delay plus the server's backpressure (a write blocks
	// while the server does not read).
	SendLag *Percentiles `json:"send_lag,omitempty"`
	// Ack is, for relay with Acked, scheduled → the signal's ack received.
	Ack *Percentiles `json:"ack,omitempty"`
	// Errors counts failures by reason: error:<code>[:<request>] (callmesh
	// error frames, with the request they answer: invite, accept, hangup), http_<status> (refused dials), close:<code>, conn_lost,
	// timeout:<stage>, ended:<reason> (a call that ended unexpectedly),
	// backlog (calls scheduled but never started), peerjs:<type>.
	Errors map[string]int64 `json:"errors"`
	Failed int64            `json:"failed"` // calls that did not complete, dials that failed
	Lost   int64            `json:"lost"`   // relay: signals sent and never received
	Dups   int64            `json:"dups"`   // relay: signals received twice or out of order
	// AcksLost is, for relay with Acked, signals sent and never acked.
	AcksLost int64 `json:"acks_lost,omitempty"`
	// ServerPID is the server process measured, 0 when it is not local.
	ServerPID int `json:"server_pid"`
	// ServerRSSPerConnKiB is the server's resident memory growth since
	// before the first dial, over the connections open (connect).
	ServerRSSPerConnKiB float64 `json:"server_rss_per_conn_kib"`
	ServerRSSMiB        float64 `json:"server_rss_mib"`
	// ServerCPUPerOpUs is the server's user + system CPU time over the
	// measured window, per call completed or signal sent (calls, relay).
	ServerCPUPerOpUs float64 `json:"server_cpu_per_op_us"`
	// ServerCPUUtil is that CPU time over the window's wall time (1 = one core).
	ServerCPUUtil float64 `json:"server_cpu_util"`
	// Pass: the step met the criterion (p99 ≤ MaxP99, no errors, failures or losses).
	Pass bool `json:"pass"`
}

// Report is a run: its steps and, for a sweep, the best one that passed.
type Report struct {
	Target    string   `json:"target"`
	Scenario  string   `json:"scenario"`
	Criterion string   `json:"criterion"`
	Steps     []Result `json:"steps"`
	// Best is the highest rate (connect: connections) that passed, 0 if none.
	Best float64 `json:"best"`
	// RateLimited is set when a gateway's rate limits refused some of the load.
	RateLimited bool `json:"rate_limited"`
}

// run is the state shared by a run's goroutines.
type run struct {
	o      *Options
	runID  string
	base   time.Time // every scheduled time is an offset from base
	dialer *dialer
	srv    server

	lat         *latencies   // the step's main latency
	ring        *latencies   // calls: ring latency
	lag         *latencies   // relay: scheduled → written, the generator's own delay
	ack         *latencies   // relay with Acked: scheduled → ack received
	measureFrom atomic.Int64 // offset from base: earlier sends are warm-up
	errors      errorCounts

	progress    atomic.Pointer[func() string]
	lastDialErr atomic.Value // string: the last dial's error, for messages
}

// Run runs the scenario of o and returns its report. ctx ends it early:
// the steps done so far are reported.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if _, err := raiseFileLimit(); err != nil {
		return nil, fmt.Errorf("bench: raise the open files limit: %w", err)
	}
	srv, err := findServer(o.PID, o.URLs)
	if err != nil && o.PID != 0 {
		return nil, fmt.Errorf("bench: server process %d: %w", o.PID, err)
	}
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	r := &run{
		o: &o, runID: hex.EncodeToString(id), base: time.Now(),
		dialer: newDialer(o.Sources, isLoopback(o.URLs[0])),
		srv:    srv,
		lat:    newLatencies(), ring: newLatencies(), lag: newLatencies(), ack: newLatencies(),
	}
	stop := r.showProgress()
	defer stop()
	rep := &Report{Target: o.Target, Scenario: o.Scenario,
		Criterion: fmt.Sprintf("p99 ≤ %s, no errors, failures or losses", o.MaxP99)}
	switch o.Scenario {
	case ScenarioConnect:
		err = r.connect(ctx, rep)
	case ScenarioCalls:
		err = r.calls(ctx, rep)
	default:
		err = r.relay(ctx, rep)
	}
	for _, s := range rep.Steps {
		if rateLimited(s.Errors) {
			rep.RateLimited = true
		}
		if s.Pass {
			best := s.Rate
			if o.Scenario == ScenarioConnect {
				best = float64(s.Conns)
			}
			rep.Best = math.Max(rep.Best, best)
		}
	}
	return rep, err
}

// userName is the user id (or PeerJS id) of connection i.
func (r *run) userName(i int) string { return fmt.Sprintf("bench-%s-%d", r.runID, i) }

// setProgress makes f the source of the live status line.
func (r *run) setProgress(f func() string) { r.progress.Store(&f) }

// showProgress prints the status line until the returned func is called.
func (r *run) showProgress() (stop func()) {
	w := r.o.Progress
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
				if f := r.progress.Load(); f != nil {
					fmt.Fprintf(w, "\r\x1b[K%s", (*f)())
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// sweepRates are the rates of the steps: o.Rate alone, or, for a sweep,
// o.Rate growing by o.SweepFactor, rounded to two significant digits.
func (o *Options) sweepRates() []float64 {
	if !o.Sweep {
		return []float64{o.Rate}
	}
	var rates []float64
	for rate := o.Rate; len(rates) < o.SweepSteps; rate *= o.SweepFactor {
		r := round2(rate)
		if len(rates) == 0 || r > rates[len(rates)-1] {
			rates = append(rates, r)
		}
	}
	return rates
}

// steps runs step for each rate of the sweep (step numbers from 1), and
// adds its results to rep. A sweep goes on while steps meet the criterion;
// a rate that misses it is run again up to o.SweepRetries times.
func (r *run) steps(ctx context.Context, rep *Report, step func(rate float64, n int) Result) {
	rates := r.o.sweepRates()
	retries := 0
	for i, n := 0, 1; i < len(rates) && ctx.Err() == nil; n++ {
		res := step(rates[i], n)
		if ctx.Err() != nil {
			return
		}
		rep.Steps = append(rep.Steps, res)
		switch {
		case !r.o.Sweep:
			return
		case res.Pass:
			i, retries = i+1, 0
		case retries < r.o.SweepRetries:
			retries++
		default:
			return
		}
	}
}

// round2 rounds x to two significant digits: 1234 → 1200.
func round2(x float64) float64 {
	if x < 10 {
		return math.Round(x*10) / 10
	}
	p := math.Pow(10, math.Floor(math.Log10(x))-1)
	return math.Round(x/p) * p
}

// open dials connection i to url and waits for its welcome (callmesh) or
// OPEN (PeerJS), returning the time that took or the reason it failed.
func (r *run) open(ctx context.Context, i int, url string) (*conn, time.Duration, string) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	c, err := r.dialer.dial(dctx, url, i, r.userName(i), r)
	if err != nil {
		r.lastDialErr.Store(err.Error())
		var de *dialError
		if errors.As(err, &de) {
			return nil, 0, de.reason
		}
		return nil, 0, "dial"
	}
	f, reason := c.await(r.o.Timeout, "", func(f *frame) bool {
		return f.Type == "welcome" || f.Type == "OPEN" || f.Type == "ERROR" || f.Type == "ID-TAKEN"
	})
	if f == nil || f.Type != "welcome" && f.Type != "OPEN" {
		c.close(nil)
		if reason == "" {
			reason = "refused" // the close or error frame is counted by the reader
		} else {
			reason += ":welcome"
		}
		return nil, 0, reason
	}
	return c, time.Since(start), ""
}

// dialURL is the URL connection i dials: the gateway gw of the list with a
// token for its user, or PeerJS with its id.
func (r *run) dialURL(ctx context.Context, i, gw int, token string) string {
	u := r.o.URLs[gw%len(r.o.URLs)]
	if r.o.Target == TargetPeerJS {
		return withQuery(u, "key", "peerjs", "id", r.userName(i), "token", r.runID)
	}
	return withQuery(u, "access_token", token)
}

// tokens gets a token for each of the users of connections from … to-1
// (none for PeerJS), 16 at a time.
func (r *run) tokens(ctx context.Context, from, to int) ([]string, error) {
	toks := make([]string, to-from)
	if r.o.Target == TargetPeerJS {
		return toks, nil
	}
	var (
		mu    sync.Mutex
		first error
	)
	parallel(ctx, 16, from, to, func(i int) bool {
		t, err := r.o.Token(ctx, r.userName(i))
		if err != nil {
			mu.Lock()
			first = cmpErr(first, fmt.Errorf("token for %s: %w", r.userName(i), err))
			mu.Unlock()
			return false
		}
		toks[i-from] = t
		return true
	})
	if first == nil {
		first = ctx.Err()
	}
	return toks, first
}

// parallel calls fn(i) for every i from … to-1 on workers goroutines, and
// returns when all are done. A worker stops when fn returns false or ctx
// ends.
func parallel(ctx context.Context, workers, from, to int, fn func(i int) bool) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range min(workers, max(to-from, 1)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= to || !fn(i) {
					return
				}
			}
		})
	}
	wg.Wait()
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// bye is what a connection sends before it closes: callmesh's bye ends the
// session at once instead of holding it for the resume grace.
func (r *run) bye() []byte {
	if r.o.Target == TargetCallmesh {
		return []byte(`{"type":"bye"}`)
	}
	return nil
}

// closeAll closes conns, 64 at a time.
func (r *run) closeAll(conns []*conn) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.close(r.bye())
		})
	}
	wg.Wait()
}

// since is the current offset from base.
func (r *run) since() time.Duration { return time.Since(r.base) }

// sleepUntil sleeps until offset t from base, or ctx ends.
func (r *run) sleepUntil(ctx context.Context, t time.Duration) {
	d := t - r.since()
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// schedule fires fire(worker, scheduled) at rate per second, split over
// workers goroutines, from offset start to end, open loop: a worker that
// falls behind fires what is due at once, each with its scheduled time.
// Each worker wakes at most every 250 µs and fires all that is due.
func (r *run) schedule(ctx context.Context, workers int, rate float64, start, end time.Duration, fire func(worker int, sched time.Duration)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// The k-th firing of worker w is operation w + k·workers:
			// computed, not summed, so rounding does not add up.
			at := func(k int) time.Duration {
				return start + time.Duration((float64(w)+float64(k)*float64(workers))*float64(time.Second)/rate)
			}
			k := 0
			next := at(0)
			for next < end && ctx.Err() == nil {
				now := r.since()
				for next <= now && next < end {
					fire(w, next)
					k++
					next = at(k)
				}
				if next < end {
					time.Sleep(max(next-r.since(), 250*time.Microsecond))
				}
			}
		})
	}
	wg.Wait()
}

// pct is the label of a percentile line for progress.
func pct(p Percentiles) string {
	return fmt.Sprintf("p50 %.2fms p99 %.2fms", p.P50, p.P99)
}

// fmtRate writes a rate without needless decimals.
func fmtRate(x float64) string {
	if x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	return strings.TrimRight(fmt.Sprintf("%.1f", x), "0")
}
