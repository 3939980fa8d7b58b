package meshtest

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/messages"
)

// tap counts the NATS round trips of a mesh started with
// Options.RoleInboxes: it subscribes to every subject (">") on the one
// server and sorts each request by who made it (its reply subject's inbox
// prefix) and what it is (its subject). A request is anything sent with a
// reply subject: a KV get (a direct get, or a read from the stream's
// leader), a KV write (a publish awaiting its ack), a router request, a router's delivery
// awaiting its receipt. Watch pushes (deliveries of a KV watcher) are
// counted apart: they are not round trips, but each router pays for them.
type tap struct {
	t      testing.TB
	nc     *nats.Conn
	prefix string // messages.Names prefix

	mu      sync.Mutex
	counts  map[string]int      // "role kind" → requests since mark; guarded by mu
	pending map[string]string   // reply subject → kind, not yet answered; guarded by mu
	marks   map[string]chan int // marker subject → signalled when seen; guarded by mu
	events  int                 // event publishes (off the request path) ever seen; guarded by mu
}

func newTap(t testing.TB, m *Mesh) *tap {
	t.Helper()
	tp := &tap{t: t, nc: m.Connect("tap"), prefix: m.names.Prefix(),
		counts: map[string]int{}, pending: map[string]string{}, marks: map[string]chan int{}}
	sub, err := tp.nc.Subscribe(">", tp.see)
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := tp.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tp
}

func (tp *tap) see(m *nats.Msg) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if ch, ok := tp.marks[m.Subject]; ok {
		close(ch)
		delete(tp.marks, m.Subject)
		return
	}
	if _, ok := tp.pending[m.Subject]; ok {
		delete(tp.pending, m.Subject) // the answer
		return
	}
	role := ""
	switch {
	case strings.HasPrefix(m.Reply, RouterInbox+"."):
		role = "router"
	case strings.HasPrefix(m.Reply, GatewayInbox+"."):
		role = "gateway"
	case strings.HasPrefix(m.Reply, "$JS.ACK.KV_"):
		bucket := strings.SplitN(strings.TrimPrefix(m.Reply, "$JS.ACK.KV_"), ".", 2)[0]
		tp.counts["router push "+tp.short(bucket)]++ // every watcher is a router's
		return
	default:
		return // a publish without answer, an answer, or a flow control
	}
	kind := tp.kind(m)
	tp.pending[m.Reply] = kind
	tp.counts[role+" "+kind]++
	if strings.HasPrefix(kind, "event ") {
		tp.events++
	}
}

// short names a bucket without the mesh prefix.
func (tp *tap) short(bucket string) string { return strings.TrimPrefix(bucket, tp.prefix+"_") }

// kind names what a request does.
func (tp *tap) kind(m *nats.Msg) string {
	s := m.Subject
	switch {
	case strings.HasPrefix(s, "$JS.API.DIRECT.GET.KV_"):
		rest := strings.TrimPrefix(s, "$JS.API.DIRECT.GET.KV_")
		bucket, key, _ := strings.Cut(rest, ".$KV.")
		_, key, _ = strings.Cut(key, ".")
		return "kv get " + tp.short(bucket) + " " + keyKind(key)
	case strings.HasPrefix(s, "$JS.API.STREAM.MSG.GET.KV_"):
		// A read from the stream's leader (kvutil.LeaderGet).
		var req struct {
			Subject string `json:"last_by_subj"`
		}
		_ = json.Unmarshal(m.Data, &req)
		bucket, key, _ := strings.Cut(strings.TrimPrefix(req.Subject, "$KV."), ".")
		return "kv leader get " + tp.short(bucket) + " " + keyKind(key)
	case strings.HasPrefix(s, "$JS.API."):
		return "js api"
	case strings.HasPrefix(s, "$KV."):
		bucket, key, _ := strings.Cut(strings.TrimPrefix(s, "$KV."), ".")
		op := "write"
		if o := m.Header.Get("KV-Operation"); o != "" {
			op = strings.ToLower(o)
		}
		return "kv " + op + " " + tp.short(bucket) + " " + keyKind(key)
	case s == tp.prefix+".router":
		return "router request"
	case strings.HasPrefix(s, tp.prefix+".gw.") && strings.HasSuffix(s, ".deliver"):
		return "delivery"
	case strings.HasPrefix(s, tp.prefix+".events."):
		kind, _, _ := strings.Cut(strings.TrimPrefix(s, tp.prefix+".events."), ".")
		return "event " + kind
	}
	return "request " + s
}

// keyKind is a key's kind: the part before its first dot (call, busy,
// user, gw).
func keyKind(key string) string {
	k, _, _ := strings.Cut(key, ".")
	return k
}

// background reports kinds that tick on their own, whatever the clients
// do: gateway heartbeats, the monitors' reads of them, watchers' restarts.
func background(kind string) bool {
	return strings.HasSuffix(kind, " gw") || strings.Contains(kind, "js api")
}

// settle waits until the tap has seen everything sent so far and every
// request it saw has its answer, then returns the counts since the last
// settle (background kinds left out) and starts counting afresh.
func (tp *tap) settle() map[string]int {
	tp.t.Helper()
	subject := "tap.mark." + messages.NewID()
	seen := make(chan int)
	tp.mu.Lock()
	tp.marks[subject] = seen
	tp.mu.Unlock()
	if err := tp.nc.Publish(subject, nil); err != nil {
		tp.t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(Wait):
		tp.t.Fatal("tap: marker not seen")
	}
	deadline := time.Now().Add(Wait)
	for {
		tp.mu.Lock()
		n := 0
		for _, kind := range tp.pending {
			if !background(kind) {
				n++
			}
		}
		if n == 0 {
			counts := map[string]int{}
			for k, v := range tp.counts {
				if !background(k) {
					counts[k] = v
				}
			}
			tp.counts = map[string]int{}
			tp.mu.Unlock()
			return counts
		}
		tp.mu.Unlock()
		if time.Now().After(deadline) {
			tp.t.Fatalf("tap: %d requests still unanswered after %v", n, Wait)
		}
		time.Sleep(5 * time.Millisecond) // polling the condition above
	}
}

// roundTrips is the number of requests in counts on the requests' path:
// pushes are left out, and so are event publishes, which a router makes
// from its own goroutine after it has answered.
func roundTrips(counts map[string]int, role string) int {
	n := 0
	for k, v := range counts {
		if strings.HasPrefix(k, role+" ") && !strings.Contains(k, " push ") && !strings.Contains(k, " event ") {
			n += v
		}
	}
	return n
}

// describeCounts lists counts one "kind ×n" per entry, sorted.
func describeCounts(counts map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}
