package courier_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/internal/natstest"
)

// The cluster tests run three embedded servers, A, B and C, in a full mesh
// whose A–C route goes through a TCP proxy that can cut it. Subscribers are
// on A, publishers on C: in a full mesh a message from C reaches A's
// clients only over the direct A–C route (a server never forwards what it
// got from a route to another route), so cutting the proxy's connections
// is the loss of that route.
//
// Topology. A has no routes of its own. C's only configured route is the
// proxy's address, so C solicits A through the proxy; being an explicit
// route, C redials it after a cut (after about 1 s, nats-server's
// DEFAULT_ROUTE_RECONNECT), and A only accepts. B is started last with a
// route to A; A gossips C's URL to B (and B's to C), so B and C connect
// directly. Nobody ever gossips C's real address to A while A is without
// its route to C, so A never dials C past the proxy; waitMesh checks that
// A's routes to C come from the proxy's dials.
//
// Route pooling is left at its default (Cluster.PoolSize 0, meaning 3
// connections per pair, plus one for the pinned system account), as in
// production: the proxy cuts every connection it carries, and waitMesh
// waits until the A–C pair has as many connections as the A–B pair.
// (PoolSize -1 would mean one connection per pair, pre-2.10 behaviour.)

// proxy pipes TCP connections accepted on a loopback port to target, and
// can cut all of them at once.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and the pipes

	mu    sync.Mutex
	conns map[net.Conn]bool // both ends of each live pipe; guarded by mu
	dials map[int]bool      // local ports of the dials to target; guarded by mu
	// held is closed when the current outage ends; a connection accepted
	// during an outage waits for its end before the proxy dials the
	// target. Guarded by mu.
	held chan struct{}
	quit chan struct{} // closed by close
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}, dials: map[int]bool{}, quit: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }
func (p *proxy) port() int    { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.track(in)
		p.wg.Add(1)
		go p.pipe(in)
	}
}

// track registers c to be cut.
func (p *proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
}

func (p *proxy) pipe(in net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-p.quit:
			in.Close()
			return
		}
	}
	out, err := net.DialTimeout("tcp", p.target, natstest.Wait)
	if err != nil {
		in.Close()
		return
	}
	p.mu.Lock()
	cut := !p.conns[in] // cut while dialing
	p.conns[out] = true
	p.dials[out.LocalAddr().(*net.TCPAddr).Port] = true
	p.mu.Unlock()
	if cut {
		out.Close()
	}
	done := make(chan struct{})
	go func() {
		io.Copy(out, in)
		in.Close()
		out.Close()
		close(done)
	}()
	io.Copy(in, out)
	in.Close()
	out.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, in)
	delete(p.conns, out)
	p.mu.Unlock()
}

// cut closes every live connection through the proxy, and holds the
// connections it accepts for outage before piping them.
func (p *proxy) cut(outage time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	if outage > 0 {
		held := make(chan struct{})
		p.held = held
		time.AfterFunc(outage, func() {
			p.mu.Lock()
			if p.held == held {
				p.held = nil
			}
			p.mu.Unlock()
			close(held)
		})
	}
}

// dialedFrom reports whether port is the local port of one of the
// proxy's dials to its target.
func (p *proxy) dialedFrom(port int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials[port]
}

func (p *proxy) close() {
	p.ln.Close()
	close(p.quit)
	p.cut(0)
	p.wg.Wait()
}

type cluster struct {
	a, b, c *server.Server
	proxy   *proxy // between C (dialing) and A's cluster port
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	cl := &cluster{a: startServer(t, "A", true)}
	cl.proxy = startProxy(t, cl.a.ClusterAddr().String())
	cl.c = startServer(t, "C", true, cl.proxy.addr())
	natstest.Eventually(t, "route C–A", func() bool { return cl.a.NumRemotes() == 1 && cl.c.NumRemotes() == 1 })
	cl.b = startServer(t, "B", true, cl.a.ClusterAddr().String())
	cl.waitMesh(t)
	return cl
}

// routes counts srv's route connections by the name of the remote server.
func routes(srv *server.Server) (map[string][]*server.RouteInfo, error) {
	rz, err := srv.Routez(nil)
	if err != nil {
		return nil, err
	}
	by := map[string][]*server.RouteInfo{}
	for _, r := range rz.Routes {
		by[r.RemoteName] = append(by[r.RemoteName], r)
	}
	return by, nil
}

// waitMesh waits for the full mesh: every pair has all its route
// connections (as many as A–B, which is never cut), and A–C goes through
// the proxy on both sides.
func (cl *cluster) waitMesh(t testing.TB) {
	t.Helper()
	natstest.WaitFor(t, "full mesh", func() error {
		ra, err := routes(cl.a)
		if err != nil {
			return err
		}
		rb, err := routes(cl.b)
		if err != nil {
			return err
		}
		rc, err := routes(cl.c)
		if err != nil {
			return err
		}
		pool := len(ra["B"])
		if pool == 0 {
			return errors.New("no route A–B")
		}
		for _, n := range []struct {
			what string
			got  int
		}{
			{"A→C", len(ra["C"])}, {"B→A", len(rb["A"])}, {"B→C", len(rb["C"])}, {"C→A", len(rc["A"])}, {"C→B", len(rc["B"])},
		} {
			if n.got != pool {
				return fmt.Errorf("%s has %d route connections, A→B %d", n.what, n.got, pool)
			}
		}
		if len(ra)+len(rb)+len(rc) != 6 {
			return fmt.Errorf("routes to unexpected servers: %v %v %v", ra, rb, rc)
		}
		for _, r := range rc["A"] {
			if r.Port != cl.proxy.port() {
				return fmt.Errorf("C reaches A at port %d, not through the proxy (%d)", r.Port, cl.proxy.port())
			}
		}
		for _, r := range ra["C"] {
			if !cl.proxy.dialedFrom(r.Port) {
				return fmt.Errorf("A's route from C comes from port %d, not from the proxy", r.Port)
			}
		}
		return nil
	})
}

// routeToA reports whether C has (any connection of) a route to A.
func (cl *cluster) routeToA() bool { return cl.c.NumRemotes() == 2 }

// outage is how long the A–C route stays down at least after a cut. C
// redials its route about 1 s after it lost it; but after a reconnection
// more of its redials (one per lost pool connection) come for a second
// or so, and are closed as duplicates: a cut then would be repaired at
// once. The proxy holds the redials made during the outage.
const outage = 300 * time.Millisecond

// cutAC cuts the A–C route and waits until C has seen it go.
func (cl *cluster) cutAC(t testing.TB) {
	t.Helper()
	cl.proxy.cut(outage)
	natstest.Eventually(t, "C lost its route to A", func() bool { return !cl.routeToA() })
}

// During a cut, the iterations are paced while C has no route to A, so
// that they spread over the reconnection window (0.3 to 1.1 s), and then a
// few more run at once, as soon as C has its route again, while A is
// replaying its interest to C.
const (
	pace      = 4 * time.Millisecond
	afterBack = 25
)

// cutWindow cuts the A–C route and calls iter until C has its route back
// and afterBack more times. It returns how long C was without its route
// (as iter saw it).
func (cl *cluster) cutWindow(t testing.TB, iter func()) time.Duration {
	t.Helper()
	start := time.Now()
	cl.cutAC(t)
	tick := time.NewTicker(pace)
	defer tick.Stop()
	var down time.Duration
	for back := 0; back < afterBack; {
		if time.Since(start) > natstest.Wait {
			t.Fatal("C's route to A did not come back")
		}
		iter()
		if !cl.routeToA() {
			<-tick.C
			continue
		}
		if back == 0 {
			down = time.Since(start)
		}
		back++
	}
	return down
}

func roundAll(ds []time.Duration) []time.Duration {
	for i := range ds {
		ds[i] = ds[i].Round(10 * time.Millisecond)
	}
	return ds
}

// rawSub is a subscriber connection on A whose subscriptions all deliver
// to one channel, in the order the messages came on the connection, and a
// publisher on C. A marker subject, subscribed at the start and known to
// C, tells which messages are not coming: C forwards a publisher's
// messages to A in order over one route connection (all of one account go
// over the same pooled connection) and A delivers them to the subscriber
// in order, so a message published before a marker that arrives without
// it was dropped. No waiting for a time that might be too short.
//
// Each try also publishes to an established subject (subscribed at the
// start, like a gateway's delivery subject), with the new subject as data.
type rawSub struct {
	sub, pub *nats.Conn
	ch       chan *nats.Msg
	got      map[string]bool // brand-new subjects received
	gotEst   map[string]bool // established-subject messages received, by data
	mark     int
}

const (
	markSubject = "repro.mark"
	estSubject  = "repro.established"
)

func newRawSub(t testing.TB, cl *cluster) *rawSub {
	t.Helper()
	r := &rawSub{
		sub:    natstest.Connect(t, cl.a, "raw-sub"),
		pub:    natstest.Connect(t, cl.c, "raw-pub"),
		ch:     make(chan *nats.Msg, 1<<16),
		got:    map[string]bool{},
		gotEst: map[string]bool{},
	}
	for _, subject := range []string{markSubject, estSubject} {
		if _, err := r.sub.ChanSubscribe(subject, r.ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.sub.Flush(); err != nil {
		t.Fatal(err)
	}
	r.settle(t) // C has the marker's interest, and the established one's
	return r
}

// settle publishes a new marker (again every 50 ms, while a route may be
// down) until it arrives; then every message published before it that
// has not arrived never will.
func (r *rawSub) settle(t testing.TB) {
	t.Helper()
	r.mark++
	want := strconv.Itoa(r.mark)
	again := time.NewTicker(50 * time.Millisecond)
	defer again.Stop()
	deadline := time.NewTimer(natstest.Wait)
	defer deadline.Stop()
	publish := func() {
		if err := r.pub.Publish(markSubject, []byte(want)); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	for {
		select {
		case m := <-r.ch:
			switch m.Subject {
			case markSubject:
				if string(m.Data) == want {
					return
				} // else an earlier marker, repeated
			case estSubject:
				r.gotEst[string(m.Data)] = true
			default:
				r.got[m.Subject] = true
			}
		case <-again.C:
			publish()
		case <-deadline.C:
			t.Fatal("marker did not arrive")
		}
	}
}

// try subscribes on A to subject, then, once A has the subscription,
// publishes on C to it and to the established subject. It reports whether
// C had a route to A both before and after it processed the messages
// ("up"), neither ("down"), or the route came or went meanwhile.
func (r *rawSub) try(t testing.TB, cl *cluster, subject string) (*nats.Subscription, string) {
	t.Helper()
	s, err := r.sub.ChanSubscribe(subject, r.ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.sub.Flush(); err != nil {
		t.Fatal(err)
	}
	before := cl.routeToA()
	if err := r.pub.Publish(subject, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.pub.Publish(estSubject, []byte(subject)); err != nil {
		t.Fatal(err)
	}
	if err := r.pub.Flush(); err != nil { // C has processed them
		t.Fatal(err)
	}
	after := cl.routeToA()
	switch {
	case before && after:
		return s, "up"
	case !before && !after:
		return s, "down"
	}
	return s, "changing"
}

// Iterations of each kind, in the raw and courier parts.
const (
	newIters        = 700 // raw: a brand-new subject, the route steady
	courierNewIters = 600 // the same through the courier (slower)
	cutIters        = 400 // a brand-new subject, during A–C route cuts (at least)
)

func TestCluster(t *testing.T) {
	cl := startCluster(t)
	t.Run("raw", func(t *testing.T) { testRawLoss(t, cl) })
	t.Run("courier", func(t *testing.T) { testCourierLosesNothing(t, cl) })
	t.Run("order", func(t *testing.T) { testPostOrder(t, cl) })
}

// tally counts the messages of the tries of one kind.
type tally struct{ tries, lostNew, lostEst int }

// testRawLoss reproduces core NATS' losses on a cluster: a publish on C to
// a subject A's subscriber has just subscribed to (A has the interest,
// C not yet), and publishes while the A–C route is being rebuilt.
func testRawLoss(t *testing.T, cl *cluster) {
	r := newRawSub(t, cl)
	count := func(tallies map[string]*tally, kinds map[string]string) {
		for subject, kind := range kinds {
			k := tallies[kind]
			if k == nil {
				k = &tally{}
				tallies[kind] = k
			}
			k.tries++
			if !r.got[subject] {
				k.lostNew++
			}
			if !r.gotEst[subject] {
				k.lostEst++
			}
		}
	}

	start := time.Now()
	steady := map[string]*tally{}
	for i := range newIters {
		subject := fmt.Sprintf("repro.new.%d", i)
		s, kind := r.try(t, cl, subject)
		r.settle(t)
		count(steady, map[string]string{subject: kind})
		s.Unsubscribe()
	}
	st := steady["up"]
	if st == nil || st.tries != newIters {
		t.Fatalf("the A–C route was not steady: %v", steady)
	}
	t.Logf("route steady: lost %d of %d to a brand-new subject, %d to the established one (%v)",
		st.lostNew, st.tries, st.lostEst, time.Since(start).Round(time.Millisecond))
	// The measure itself: nothing is lost on a steady route to a subject
	// whose interest C has.
	if st.lostEst != 0 {
		t.Errorf("%d messages to the established subject lost on a steady route", st.lostEst)
	}

	start = time.Now()
	cut := map[string]*tally{}
	n := 0
	var windows []time.Duration
	for n < cutIters {
		var subs []*nats.Subscription
		kinds := map[string]string{}
		windows = append(windows, cl.cutWindow(t, func() {
			subject := fmt.Sprintf("repro.cut.%d", n)
			n++
			s, kind := r.try(t, cl, subject)
			subs = append(subs, s)
			kinds[subject] = kind
		}))
		r.settle(t)
		count(cut, kinds)
		for _, s := range subs {
			s.Unsubscribe()
		}
		cl.waitMesh(t)
	}
	total := tally{}
	for _, kind := range []struct{ key, what string }{
		{"down", "C without a route to A"}, {"changing", "C's route to A coming back"}, {"up", "C with its route to A again"},
	} {
		k := cut[kind.key]
		if k == nil {
			k = &tally{}
		}
		total.tries += k.tries
		total.lostNew += k.lostNew
		total.lostEst += k.lostEst
		t.Logf("  route cut, %s: lost %d of %d to a brand-new subject, %d to the established one", kind.what, k.lostNew, k.tries, k.lostEst)
	}
	t.Logf("route cut %d times (down %v): lost %d of %d to a brand-new subject, %d to the established one (%v)",
		len(windows), roundAll(windows), total.lostNew, total.tries, total.lostEst, time.Since(start).Round(time.Millisecond))

	// Deterministic: C has no route to A for 0.3 s at least after each cut;
	// the publishes made then have nowhere to go, and a server does not
	// keep them.
	down := cut["down"]
	if down == nil || down.tries == 0 {
		t.Fatal("no publish while C had no route to A: the cut did not reproduce anything")
	}
	if down.lostNew != down.tries || down.lostEst != down.tries {
		t.Errorf("of %d publishes made while C had no route to A, %d to a new subject and %d to the established one arrived",
			down.tries, down.tries-down.lostNew, down.tries-down.lostEst)
	}
}

// receiver answers every message it gets and counts them by the id they
// carry (the data), like a subscriber dropping repeats.
type receiver struct {
	mu   sync.Mutex
	seen map[string]int // guarded by mu
}

func (rc *receiver) handle(m *nats.Msg) {
	rc.mu.Lock()
	rc.seen[string(m.Data)]++
	rc.mu.Unlock()
	m.Respond([]byte("ok"))
}

func (rc *receiver) count(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.seen[id]
}

// sendResult is one courier.Send of the cluster test.
type sendResult struct {
	id    string
	tries int
	err   error
}

// testCourierLosesNothing does what testRawLoss does through the courier:
// every message is answered, and received at least once.
func testCourierLosesNothing(t *testing.T, cl *cluster) {
	subConn := natstest.Connect(t, cl.a, "courier-sub")
	pubConn := natstest.Connect(t, cl.c, "courier-pub")
	cr := newCourier(t, pubConn)
	rc := &receiver{seen: map[string]int{}}

	send := func(i int, kind string) sendResult {
		id := fmt.Sprintf("%s.%d", kind, i)
		s, err := subConn.Subscribe("courier."+id, rc.handle)
		if err != nil {
			return sendResult{id: id, err: err}
		}
		defer s.Unsubscribe()
		if err := subConn.Flush(); err != nil {
			return sendResult{id: id, err: err}
		}
		ctx, cancel := context.WithTimeout(context.Background(), natstest.Wait)
		defer cancel()
		answer, tries, err := cr.Send(ctx, &nats.Msg{Subject: "courier." + id, Data: []byte(id)}, 200*time.Millisecond)
		if err == nil && string(answer.Data) != "ok" {
			err = fmt.Errorf("answer %q", answer.Data)
		}
		return sendResult{id: id, tries: tries, err: err}
	}

	check := func(what string, results []sendResult, took time.Duration) {
		t.Helper()
		retried, maxTries, repeats := 0, 0, 0
		for _, r := range results {
			if r.err != nil {
				t.Errorf("%s: send %s: %v", what, r.id, r.err)
				continue
			}
			if n := rc.count(r.id); n == 0 {
				t.Errorf("%s: %s answered but not received", what, r.id)
			} else {
				repeats += n - 1
			}
			if r.tries > 1 {
				retried++
			}
			maxTries = max(maxTries, r.tries)
		}
		t.Logf("%s: %d sent, %d retried, at most %d tries, %d repeats received (%v)",
			what, len(results), retried, maxTries, repeats, took.Round(time.Millisecond))
	}

	// The courier's inbox interest reaches A asynchronously too: the first
	// answers may be lost (and tried again), so settle it first.
	if r := send(0, "warm"); r.err != nil {
		t.Fatal(r.err)
	}

	start := time.Now()
	var results []sendResult
	for i := range courierNewIters {
		results = append(results, send(i, "new"))
	}
	check("courier, brand-new subject, route steady", results, time.Since(start))

	start = time.Now()
	results = nil
	var mu sync.Mutex
	n := 0
	var windows []time.Duration
	for n < cutIters {
		var wg sync.WaitGroup
		windows = append(windows, cl.cutWindow(t, func() {
			i := n
			n++
			wg.Go(func() {
				r := send(i, "cut")
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			})
		}))
		wg.Wait()
		cl.waitMesh(t)
	}
	check(fmt.Sprintf("courier, brand-new subject, A–C route cut %d times (down %v)", len(windows), roundAll(windows)), results, time.Since(start))
}

// testPostOrder posts several messages in a row to one subscriber and
// checks that they arrive in the order posted.
func testPostOrder(t *testing.T, cl *cluster) {
	subConn := natstest.Connect(t, cl.a, "order-sub")
	pubConn := natstest.Connect(t, cl.c, "order-pub")
	cr := newCourier(t, pubConn)

	var mu sync.Mutex
	var got []string // guarded by mu
	if _, err := subConn.Subscribe("order", func(m *nats.Msg) {
		mu.Lock()
		got = append(got, string(m.Data))
		mu.Unlock()
		m.Respond(nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := subConn.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), natstest.Wait)
	defer cancel()
	// Establish the subscription's interest on C (and the inbox's on A).
	if _, _, err := cr.Send(ctx, &nats.Msg{Subject: "order", Data: []byte("warm")}, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	var want []string
	var tickets []*courier.Ticket
	for i := range 100 {
		want = append(want, strconv.Itoa(i))
		tk, err := cr.Post(&nats.Msg{Subject: "order", Data: []byte(want[i])})
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	for i, tk := range tickets {
		if _, err := tk.Wait(ctx, natstest.Wait); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	got = slices.DeleteFunc(got, func(s string) bool { return s == "warm" })
	if !slices.Equal(got, want) {
		t.Errorf("posts arrived as %v, want %v", got, want)
	}
}
