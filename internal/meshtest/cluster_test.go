package meshtest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// clusterRound is what one round of a pair does. The caller stays
// connected for the whole test; the callee connects fresh each round, on
// gateways other than the caller's, and is invited as soon as its welcome
// (the last one, with two devices) is in.
type clusterRound struct {
	reconnect   bool // the last round's callee leaves (bye) and connects again; else a new user
	devices     int  // the callee's devices, on the two gateways other than the caller's
	reject      bool // the first device rejects; else device by accepts
	by          int
	callerHangs bool // the caller hangs up; else the accepting device
}

var clusterRounds = []clusterRound{
	{devices: 1, callerHangs: true},
	{reconnect: true, devices: 1},
	{devices: 2, callerHangs: true}, // the second device gets answered_elsewhere
	{reconnect: true, devices: 1, reject: true},
	{devices: 1},
	{reconnect: true, devices: 2, by: 1},
	{devices: 2, reject: true}, // the second device gets rejected
	{reconnect: true, devices: 1, callerHangs: true},
	{devices: 1},
	{reconnect: true, devices: 1, callerHangs: true},
}

// TestClusterDeliveryExactlyOnce runs the mesh on a 3-node NATS cluster,
// each gateway and router on its own node, and has 50 pairs of users make
// 10 calls each at once (some to a callee with two devices, some
// rejected). Each callee connects, on another node than its caller, just
// before it is invited, so that the router's deliveries race the spread of
// the callee's new subscription through the cluster. Every device must get
// each ringing, incoming, accepted and ended of its calls exactly once,
// with the right reason, each within Wait.
//
// In the second run the gateways' NATS connections also reconnect, one
// gateway every 200 ms (route churn: a node's restart, a network blip): a
// gateway is subscribed nowhere for a moment, then on another node whose
// interest the others learn a little later. Core NATS drops a publish made
// meanwhile, so without an at-least-once delivery calls are lost here. The
// mesh may refuse requests and connections while a gateway reconnects
// (unavailable, close 1011): the clients try again, as the protocol says.
//
// Each run takes 10 to 20 s under -race on 2 cores.
func TestClusterDeliveryExactlyOnce(t *testing.T) {
	t.Run("steady", func(t *testing.T) { clusterCalls(t, false) })
	t.Run("gateways reconnect", func(t *testing.T) { clusterCalls(t, true) })
}

func clusterCalls(t *testing.T, churn bool) {
	const pairs, rounds = 50, 10
	m := Start(t, Options{Cluster: 3, Gateways: 3, Routers: 2,
		// A heartbeat TTL and a resume grace of seconds, as in production,
		// not the short ones of the tests of drops: together they bound
		// how long a delivery is tried again, and a gateway busy
		// reconnecting must not be taken for dead.
		ResumeGrace: 3 * time.Second,
		Gateway: func(c *gateway.Config) {
			NoInviteLimit(c)
			c.HeartbeatTTL = 3 * time.Second
		},
	})
	start := time.Now()
	stop, churned := make(chan struct{}), make(chan int, 1)
	var invites *sync.RWMutex // held by invites, and by a gateway reconnecting
	if churn {
		invites = new(sync.RWMutex)
		go func() { churned <- reconnectGateways(t, m, invites, stop) }()
	} else {
		churned <- 0
	}
	var stats clusterStats
	runs := make([]*clusterPair, pairs)
	var wg sync.WaitGroup
	for p := range runs {
		runs[p] = &clusterPair{m: m, p: p, churn: churn, invites: invites, stats: &stats, want: map[*Recorder]map[delivery]int{},
			failed: map[string]bool{}, refused: map[string]bool{}, unchecked: map[*Recorder]bool{}}
		wg.Go(func() {
			if err := runs[p].run(rounds); err != nil {
				t.Errorf("pair %d: %v", p, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	reconnects := <-churned
	elapsed := time.Since(start)

	// Now that everything has had its time to arrive (the first rounds'
	// deliveries for the rest of the test), each delivery must have come
	// once: not lost, not repeated.
	devices, checked := 0, 0
	for _, run := range runs {
		for _, rec := range run.recorders {
			devices++
			checked += run.check(t, rec)
		}
	}
	t.Logf("%d calls in %v (%d pairs × %d rounds, 3 nodes, 3 gateways, 2 routers, %d gateway reconnects): %d accepted (%d with a second device answered elsewhere), %d rejected (%d with a second device); %d failed",
		stats.calls.Load(), elapsed.Round(time.Millisecond), pairs, rounds, reconnects, stats.accepted.Load(), stats.elsewhere.Load(), stats.rejected.Load(), stats.rejectedOther.Load(), stats.failed.Load())
	if n := stats.refused.Load(); n > 0 {
		t.Logf("%d requests or connections refused and tried again; %d pairs stopped at a refused invite", n, stats.refusedInvites.Load())
	}
	t.Logf("%d deliveries checked on %d devices; invite → incoming: max %v, %d of %d after more than 1 s",
		checked, devices, time.Duration(stats.maxRing.Load()).Round(time.Millisecond), stats.slowRings.Load(), stats.rings.Load())
}

// reconnectGateways makes the gateways' NATS connections reconnect, one
// gateway every 200 ms, until stop is closed, and returns how many did.
// Each goes to the next node of its pool. It holds invites while a gateway
// reconnects.
func reconnectGateways(t *testing.T, m *Mesh, invites *sync.RWMutex, stop <-chan struct{}) int {
	n := 0
	for {
		select {
		case <-stop:
			return n
		case <-time.After(200 * time.Millisecond): // a pace, not a wait for something
		}
		if err := reconnect(m.Gateways[n%len(m.Gateways)].NC, invites); err != nil {
			t.Errorf("gateway %d: %v", n%len(m.Gateways), err)
			return n
		}
		n++
	}
}

// reconnect makes nc reconnect and waits until it has, holding invites.
func reconnect(nc *nats.Conn, invites *sync.RWMutex) error {
	invites.Lock()
	defer invites.Unlock()
	before := nc.Stats().Reconnects
	if err := nc.ForceReconnect(); err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	for deadline := time.Now().Add(Wait); nc.Stats().Reconnects == before || !nc.IsConnected(); {
		if time.Now().After(deadline) {
			return fmt.Errorf("not reconnected within %v", Wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// delivery is what the exactly-once check counts: a frame a client should
// see once per call (ringing, incoming, accepted, ended, and any error).
type delivery struct{ typ, call, reason string }

func (d delivery) String() string {
	if d.reason != "" {
		return fmt.Sprintf("%s{%s} of %s", d.typ, d.reason, d.call)
	}
	return fmt.Sprintf("%s of %s", d.typ, d.call)
}

// counted reports whether e is a delivery the check counts.
func counted(e *messages.Envelope) (delivery, bool) {
	switch e.Type {
	case messages.TypeRinging, messages.TypeIncoming, messages.TypeAccepted, messages.TypeEnded, messages.TypeError:
		return delivery{e.Type, e.Call, e.Reason + e.Code}, true
	}
	return delivery{}, false
}

type clusterStats struct {
	calls, accepted, elsewhere, rejected, rejectedOther, failed atomic.Int64
	refused, refusedInvites                                     atomic.Int64
	rings, slowRings, maxRing                                   atomic.Int64
}

// errRefused is a request or a connection the mesh refused (error
// unavailable, close 1011): with churn, a client tries again.
type errRefused struct{ error }

// clusterPair is one caller and its callees; owned by its goroutine until
// the test's final check.
type clusterPair struct {
	m         *Mesh
	p         int
	churn     bool          // the mesh may refuse: try again, as a client would
	invites   *sync.RWMutex // with churn, held by each invite until its answer
	stats     *clusterStats
	caller    *Recorder
	gateway   int         // the caller's
	callee    string      // the current callee
	live      []*Recorder // the current callee's devices
	recorders []*Recorder // every client of the pair, checked at the end
	want      map[*Recorder]map[delivery]int
	failed    map[string]bool    // calls whose failure was reported, left out of the final check
	refused   map[string]bool    // ids of the requests refused, whose error is expected
	unchecked map[*Recorder]bool // devices rung by a call whose invite was refused
	stopped   bool               // an invite was refused: the caller may have a call it does not know
}

func (pr *clusterPair) run(rounds int) error {
	pr.gateway = pr.p % len(pr.m.Gateways)
	caller, err := pr.dial(pr.gateway, fmt.Sprintf("caller-%d", pr.p))
	if err != nil {
		return err
	}
	pr.caller = caller
	for r := range rounds {
		if err := pr.round(r, clusterRounds[r%len(clusterRounds)]); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		if pr.stopped {
			return nil
		}
	}
	return nil
}

// dial connects user to gateway g; with churn, again while refused (up
// to 10 times).
func (pr *clusterPair) dial(g int, user string) (*Recorder, error) {
	for try := 1; ; try++ {
		c, resp, err := pr.m.DialRaw(g, pr.m.Token(user), "")
		if err == nil {
			rec := c.Record()
			pr.recorders = append(pr.recorders, rec)
			pr.want[rec] = map[delivery]int{}
			return rec, nil
		}
		if !pr.churn || resp != nil || try == 10 {
			return nil, fmt.Errorf("dial %s on gateway %d: %v (%v)", user, g, err, resp)
		}
		pr.stats.refused.Add(1)
	}
}

// expect notes that rec must get d, once.
func (pr *clusterPair) expect(rec *Recorder, d delivery) { pr.want[rec][d]++ }

func (pr *clusterPair) round(r int, k clusterRound) error {
	if k.reconnect && pr.callee != "" {
		for _, d := range pr.live {
			if err := d.Client().Write(&messages.Envelope{Type: messages.TypeBye}); err != nil {
				return err
			}
			if err := d.AwaitClosed(); err != nil {
				return err
			}
		}
	} else {
		pr.callee = fmt.Sprintf("callee-%d-%d", pr.p, r)
	}
	pr.live = pr.live[:0:0]
	n := len(pr.m.Gateways)
	for i := range k.devices { // on the other gateways, alternating
		g := (pr.gateway + 1 + (r+i)%(n-1)) % n
		d, err := pr.dial(g, pr.callee)
		if err != nil {
			return err
		}
		pr.live = append(pr.live, d)
	}

	invite := fmt.Sprintf("inv-%d", r)
	sent := time.Now()
	ack, err := pr.invite(invite)
	if refused := (errRefused{}); errors.As(err, &refused) && pr.churn {
		// The call may have been made all the same, and ring: leave
		// this pair's calls from now on out of the check.
		pr.stats.refusedInvites.Add(1)
		pr.stopped = true
		for _, d := range pr.live {
			pr.unchecked[d] = true
		}
		return nil
	}
	if err != nil {
		return err
	}
	call := ack.Call
	pr.stats.calls.Add(1)
	if err := pr.callRound(call, k, sent); err != nil {
		pr.failed[call] = true
		pr.stats.failed.Add(1)
		return fmt.Errorf("call %s to %s (%d devices): %w", call, pr.callee, k.devices, err)
	}
	return nil
}

// invite has the caller invite the callee and returns the ack. With churn
// it does so while no gateway reconnects: a refused invite may have rung
// all the same, leaving the pair's next calls in doubt. (Its incoming and
// ringing are published before the answer; the other deliveries of the
// call race the reconnects.)
func (pr *clusterPair) invite(id string) (*messages.Envelope, error) {
	if pr.invites != nil {
		pr.invites.RLock()
		defer pr.invites.RUnlock()
	}
	if err := pr.caller.Client().Write(&messages.Envelope{Type: messages.TypeInvite, ID: id, To: pr.callee}); err != nil {
		return nil, err
	}
	return pr.answer(pr.caller, id)
}

func (pr *clusterPair) callRound(call string, k clusterRound, sent time.Time) error {
	// The caller hears ringing, every device incoming.
	if _, err := pr.event(pr.caller, call, messages.TypeRinging, ""); err != nil {
		return err
	}
	for _, d := range pr.live {
		f, err := pr.event(d, call, messages.TypeIncoming, "")
		if err != nil {
			return err
		}
		if f.Env.From != pr.caller.Client().User {
			return fmt.Errorf("%s: incoming from %q", d.Client(), f.Env.From)
		}
		lat := f.At.Sub(sent)
		pr.stats.rings.Add(1)
		if lat > time.Second {
			pr.stats.slowRings.Add(1)
		}
		for {
			prev := pr.stats.maxRing.Load()
			if int64(lat) <= prev || pr.stats.maxRing.CompareAndSwap(prev, int64(lat)) {
				break
			}
		}
	}

	if k.reject {
		if err := pr.request(pr.live[0], messages.TypeReject, call); err != nil {
			return err
		}
		if _, err := pr.event(pr.caller, call, messages.TypeEnded, messages.ReasonRejected); err != nil {
			return err
		}
		for _, d := range pr.live[1:] {
			if _, err := pr.event(d, call, messages.TypeEnded, messages.ReasonRejected); err != nil {
				return err
			}
			pr.stats.rejectedOther.Add(1)
		}
		pr.stats.rejected.Add(1)
		return nil
	}

	winner := pr.live[k.by]
	if err := pr.request(winner, messages.TypeAccept, call); err != nil {
		return err
	}
	for _, d := range []*Recorder{winner, pr.caller} {
		f, err := pr.event(d, call, messages.TypeAccepted, "")
		if err != nil {
			return err
		}
		if f.Env.From != pr.callee {
			return fmt.Errorf("%s: accepted from %q", d.Client(), f.Env.From)
		}
	}
	for _, d := range pr.live {
		if d != winner {
			if _, err := pr.event(d, call, messages.TypeEnded, messages.ReasonAnsweredElsewhere); err != nil {
				return err
			}
			pr.stats.elsewhere.Add(1)
		}
	}
	hangs, hears := winner, pr.caller
	if k.callerHangs {
		hangs, hears = pr.caller, winner
	}
	if err := pr.request(hangs, messages.TypeHangup, call); err != nil {
		return err
	}
	if _, err := pr.event(hears, call, messages.TypeEnded, messages.ReasonHangup); err != nil {
		return err
	}
	pr.stats.accepted.Add(1)
	return nil
}

// request sends a request of type typ for call from rec and waits for its
// ack; with churn, again while refused, up to 10 times (each operation is
// idempotent for the same connection and call).
func (pr *clusterPair) request(rec *Recorder, typ, call string) error {
	for try := 1; ; try++ {
		id := fmt.Sprintf("%s-%d-%s", typ, try, call)
		if err := rec.Client().Write(&messages.Envelope{Type: typ, ID: id, Call: call}); err != nil {
			return err
		}
		_, err := pr.answer(rec, id)
		if refused := (errRefused{}); !errors.As(err, &refused) || !pr.churn || try == 10 {
			return err
		}
	}
}

// answer waits for the ack or error of request id and returns the ack.
func (pr *clusterPair) answer(rec *Recorder, id string) (*messages.Envelope, error) {
	f, err := rec.Await("answer to "+id, func(e *messages.Envelope) bool {
		return (e.Type == messages.TypeAck || e.Type == messages.TypeError) && e.ID == id
	})
	if err != nil {
		return nil, err
	}
	if f.Env.Type == messages.TypeError {
		err := fmt.Errorf("%s: %s refused: %s", rec.Client(), id, describe(f.Env))
		if f.Env.Code == messages.CodeUnavailable {
			pr.stats.refused.Add(1)
			pr.refused[id] = true
			return nil, errRefused{err}
		}
		return nil, err
	}
	if f.Env.Call == "" {
		return nil, fmt.Errorf("%s: ack of %s without a call", rec.Client(), id)
	}
	return f.Env, nil
}

// event waits until rec gets the next event of call, which must be typ
// (an ended with reason), and notes it as expected once.
func (pr *clusterPair) event(rec *Recorder, call, typ, reason string) (Frame, error) {
	want := delivery{typ, call, reason}
	seen := pr.want[rec]
	f, err := rec.Await(want.String(), func(e *messages.Envelope) bool {
		d, ok := counted(e)
		return ok && d.call == call && seen[d] == 0 // the first event of call not seen yet
	})
	if err != nil {
		return f, fmt.Errorf("%w; it had %s", err, pr.history(rec, call))
	}
	if got, _ := counted(f.Env); got != want {
		return f, fmt.Errorf("%s: %s instead of %s", rec.Client(), describe(f.Env), want)
	}
	pr.expect(rec, want)
	return f, nil
}

// history lists what rec received of call, for failure messages.
func (pr *clusterPair) history(rec *Recorder, call string) string {
	var s []string
	for _, f := range rec.Frames() {
		if f.Env.Call == call {
			s = append(s, f.Env.Type+"{"+f.Env.Reason+f.Env.Code+"}")
		}
	}
	if len(s) == 0 {
		return "nothing of the call"
	}
	return strings.Join(s, ", ")
}

// check compares what rec received with what it was expected to get once,
// reports every difference, and returns how many deliveries it checked.
// Calls whose failure was already reported are left out.
func (pr *clusterPair) check(t *testing.T, rec *Recorder) int {
	t.Helper()
	if pr.unchecked[rec] {
		return 0
	}
	want := map[delivery]int{}
	for d, n := range pr.want[rec] {
		if !pr.failed[d.call] {
			want[d] = n
		}
	}
	got := map[delivery]int{}
	for _, f := range rec.Frames() {
		d, ok := counted(f.Env)
		switch {
		case !ok || pr.failed[d.call] || d.typ == messages.TypeError && pr.refused[f.Env.ID]:
		case pr.stopped && rec == pr.caller && want[d] == 0 && d.call != "":
			// of the call whose invite was refused
		default:
			got[d]++
		}
	}
	var errs []string
	for d, n := range want {
		if got[d] < n {
			errs = append(errs, fmt.Sprintf("missing %s", d))
		}
	}
	for d, n := range got {
		switch {
		case want[d] == 0:
			errs = append(errs, fmt.Sprintf("unexpected %s (×%d)", d, n))
		case n > want[d]:
			errs = append(errs, fmt.Sprintf("%s ×%d", d, n))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		t.Errorf("%s: %s", rec.Client(), strings.Join(errs, "; "))
	}
	n := 0
	for _, c := range want {
		n += c
	}
	return n
}
