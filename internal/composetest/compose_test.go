//go:build compose

package composetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// gateways is how many gateways the test scales to: after one is killed
// and one stopped, calls still have two to cross.
const gateways = 4

// TestCompose runs docker-compose.yml (with the CI images) and uses it as a
// user would, through the load balancer's one port: a call across two
// gateways; the gateway of one party killed mid-call (it resumes on
// another, and what the other party sent meanwhile reaches it); the
// gateway of the other party stopped (it drains: goaway, the client
// resumes elsewhere, the old socket is closed with 4001, the gateway exits
// 0 with every client moved); the NATS node leading the calls bucket killed
// (the call goes on, new calls work once JetStream has elected new
// leaders, and the node rejoins when started again). Prometheus scrapes
// every gateway, router and TURN server, and every query of the Grafana
// dashboard runs on it. README's token and events commands work.
func TestCompose(t *testing.T) {
	s := up(t, map[string]int{"gateway": gateways})
	s.waitReady()
	checkScrapes(t, s, map[string]int{"gateway": gateways, "router": 2, "turn": 1})

	alice := connect(s, "alice")
	bob := connectElsewhere(s, "bob", alice)
	call := establish(alice, bob)
	exchange(alice, bob, call, 1)
	t.Logf("call %s: %s ⇄ %s", call, alice, bob)
	waitFor(t, wait, "Prometheus counting the two connections", func() error {
		return promEquals(s, "sum(callmesh_gateway_connections)", 2)
	})

	killGateway(t, s, alice, bob, call)
	stopGateway(t, s, alice, bob, call)
	carol, dave, call2, restart := killNATSNode(t, s, alice, bob, call)

	// Both calls end as users end them.
	for _, c := range []struct {
		from, to *client
		call     string
	}{{alice, bob, call}, {carol, dave, call2}} {
		retryTransient(c.from, &messages.Envelope{Type: messages.TypeHangup, Call: c.call})
		if e := c.to.expect(messages.TypeEnded, c.call); e.Reason != "hangup" {
			t.Fatalf("%s: call %s ended with %q, want hangup", c.to, c.call, e.Reason)
		}
	}
	waitFor(t, wait, "Prometheus counting the calls ended by hangup", func() error {
		return promAtLeast(s, `sum(callmesh_router_calls_ended_total{reason="hangup"})`, 2)
	})
	checkDashboardQueries(t, s)

	restart()
	checkCommands(t, s, call, call2)
}

// killGateway: docker kill of the gateway of a party (a) mid-call. a's
// connection ends without a close frame; a resumes through the load
// balancer on another gateway, gets what b sent meanwhile, and the call
// goes on.
func killGateway(t *testing.T, s *stack, a, b *client, call string) {
	t.Helper()
	killed := s.byAddr("gateway", a.upstream)
	s.docker("kill", killed.ID)
	if err := a.awaitClosed(a.gen, wait); closeCode(err) != -1 {
		t.Fatalf("%s: killed gateway closed the connection with %v; want no close frame", a, err)
	}
	b.signal(call, 10) // while a is away: nobody holds it, b's gateway replays it
	a.resume(call)
	if a.upstream == killed.IP+":8080" {
		t.Fatalf("%s resumed on the killed gateway %s", a, killed.Name)
	}
	a.expectSignal(call, 10)
	exchange(a, b, call, 11)
}

// stopGateway: docker stop of b's gateway mid-call. It drains: each of its
// clients (b, and a if a resumed there) gets goaway, resumes elsewhere
// after the delay goaway asks for, and its old socket is closed with 4001;
// the call goes on; the gateway exits 0 and logs that it moved everyone.
func stopGateway(t *testing.T, s *stack, a, b *client, call string) {
	t.Helper()
	stopped := s.byAddr("gateway", b.upstream)
	var moving []*client
	for _, c := range []*client{a, b} {
		if c.upstream == b.upstream {
			moving = append(moving, c)
		}
	}
	stopErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "stop", stopped.ID).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("docker stop: %w: %s", err, out)
		}
		stopErr <- err
	}()
	type move struct {
		c   *client
		gen int       // the connection the gateway drains
		at  time.Time // when goaway says to reconnect
	}
	var moves []move
	for _, c := range moving {
		goaway := c.await("goaway", wait, func(e *messages.Envelope) bool { return e.Type == messages.TypeGoaway })
		var g messages.Goaway
		if err := json.Unmarshal(goaway.Data, &g); err != nil || g.ReconnectMS < 0 || g.ReconnectMS > 5000 {
			t.Fatalf("%s: goaway %s: want reconnect_ms within half of http.drain_timeout (%v)", c, goaway.Data, err)
		}
		moves = append(moves, move{c, c.gen, time.Now().Add(time.Duration(g.ReconnectMS) * time.Millisecond)})
	}
	slices.SortFunc(moves, func(x, y move) int { return x.at.Compare(y.at) })
	for _, m := range moves {
		time.Sleep(time.Until(m.at)) // as goaway asks: the clients spread out
		m.c.resume(call)
		if err := m.c.awaitClosed(m.gen, wait); closeCode(err) != messages.CloseTakenOver {
			t.Fatalf("%s: the drained connection ended with %v; want close %d", m.c, err, messages.CloseTakenOver)
		}
		if m.c.upstream == stopped.IP+":8080" {
			t.Fatalf("%s resumed on the stopped gateway %s", m.c, stopped.Name)
		}
	}
	exchange(a, b, call, 20)
	select {
	case err := <-stopErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("docker stop still running after a minute")
	}
	if c := s.inspect(stopped.ID); c.Running || c.ExitCode != 0 {
		t.Fatalf("%s after docker stop: running %v, exit code %d; want a drained exit 0", c.Name, c.Running, c.ExitCode)
	}
	if logs := s.docker("logs", stopped.ID); !strings.Contains(logs, `"msg":"gateway stopped","component":"gateway"`) ||
		!strings.Contains(logs, `"not moved":0`) {
		t.Fatalf("%s did not log a drain that moved every client:\n%s", stopped.Name, logs)
	}
}

// killNATSNode: docker kill of the NATS node leading the calls bucket. The
// call of a and b goes on; carol calls dave, on another gateway, as soon
// as the routers take calls again. It returns them and their call, and
// restart, which starts the node again and waits until its JetStream has
// caught up.
func killNATSNode(t *testing.T, s *stack, a, b *client, call string) (carol, dave *client, call2 string, restart func()) {
	t.Helper()
	leader := s.streamLeader("KV_callmesh_calls")
	t.Logf("killing %s, leader of KV_callmesh_calls", leader)
	dead := s.running(leader)[0]
	s.docker("kill", dead.ID)
	exchange(a, b, call, 30)

	carol = connect(s, "carol")
	dave = connectElsewhere(s, "dave", carol)
	call2 = retryTransient(carol, &messages.Envelope{Type: messages.TypeInvite, To: dave.user}).Call
	carol.expect(messages.TypeRinging, call2)
	dave.expect(messages.TypeIncoming, call2)
	retryTransient(dave, &messages.Envelope{Type: messages.TypeAccept, Call: call2})
	dave.expect(messages.TypeAccepted, call2)
	carol.expect(messages.TypeAccepted, call2)
	exchange(carol, dave, call2, 1)
	t.Logf("new call %s after the NATS node's death: %s ⇄ %s", call2, carol, dave)

	restart = func() {
		t.Helper()
		s.docker("start", dead.ID)
		waitFor(t, startWait, leader+" back, JetStream current", func() error {
			c := s.inspect(dead.ID)
			if code, body := get("http://" + c.IP + ":8222/healthz"); code != http.StatusOK {
				return fmt.Errorf("%s /healthz: %d %s", leader, code, body)
			}
			return nil
		})
	}
	return carol, dave, call2, restart
}

// checkCommands runs the commands the compose file's comments and README
// give: a token minted with `docker compose run --rm router token` signs in
// through the load balancer, and `... router events` with the events login
// prints the calls' events, their ends included.
func checkCommands(t *testing.T, s *stack, calls ...string) {
	t.Helper()
	token := strings.TrimSpace(s.composeRun("router", "token", "--user", "erin"))
	erin := connectWith(s, "erin", token)
	if erin.welcome.User != "erin" {
		t.Fatalf("minted token signed in as %q", erin.welcome.User)
	}
	erin.bye()

	out := s.composeRun("-e", "CALLMESH_NATS_USER=events", "-e", "CALLMESH_NATS_PASSWORD="+s.secrets["NATS_EVENTS_PASSWORD"],
		"router", "events", "--all", "--follow=false")
	for _, call := range calls {
		found := false
		for line := range strings.Lines(out) {
			var e struct{ Type, Call, Reason string }
			if json.Unmarshal([]byte(line), &e) == nil && e.Type == "call.ended" && e.Call == call && e.Reason == "hangup" {
				found = true
			}
		}
		if !found {
			t.Errorf("callmesh events printed no call.ended of %s by hangup:\n%s", call, out)
		}
	}
}
