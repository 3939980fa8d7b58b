//go:build compose

package composetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
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

	// A call across two gateways.
	alice := connect(s, "alice")
	bob := connectElsewhere(s, "bob", alice)
	call := establish(alice, bob)
	exchange(alice, bob, call, 1)
	t.Logf("call %s: %s ⇄ %s", call, alice, bob)
	waitFor(t, wait, "Prometheus counting the two connections", func() error {
		return promEquals(s, "sum(callmesh_gateway_connections)", 2)
	})

	// docker kill alice's gateway: she resumes on another one.
	killed := s.byAddr("gateway", alice.upstream)
	s.docker("kill", killed.ID)
	if err := alice.awaitClosed(alice.gen, wait); closeCode(err) != -1 {
		t.Fatalf("%s: killed gateway closed the connection with %v; want no close frame", alice, err)
	}
	bob.signal(call, 10) // while alice is away: nobody holds it, bob's gateway replays it
	alice.resume(call)
	if alice.upstream == killed.IP+":8080" {
		t.Fatalf("alice resumed on the killed gateway %s", killed.Name)
	}
	alice.expectSignal(call, 10)
	exchange(alice, bob, call, 11)

	// docker stop bob's gateway: it drains, its clients (bob, and alice
	// if she resumed there) move.
	stopped := s.byAddr("gateway", bob.upstream)
	var moving []*client
	for _, c := range []*client{alice, bob} {
		if c.upstream == bob.upstream {
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
	slices.SortFunc(moves, func(a, b move) int { return a.at.Compare(b.at) })
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
	exchange(alice, bob, call, 20)
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

	// docker kill the NATS node leading the calls bucket.
	leader := s.streamLeader("KV_callmesh_calls")
	t.Logf("killing %s, leader of KV_callmesh_calls", leader)
	dead := s.running(leader)[0]
	s.docker("kill", dead.ID)
	exchange(alice, bob, call, 30)
	carol := connect(s, "carol")
	dave := connectElsewhere(s, "dave", carol)
	call2 := retryTransient(carol, &messages.Envelope{Type: messages.TypeInvite, To: dave.user}).Call
	carol.expect(messages.TypeRinging, call2)
	dave.expect(messages.TypeIncoming, call2)
	retryTransient(dave, &messages.Envelope{Type: messages.TypeAccept, Call: call2})
	dave.expect(messages.TypeAccepted, call2)
	carol.expect(messages.TypeAccepted, call2)
	exchange(carol, dave, call2, 1)
	t.Logf("new call %s after the NATS node's death: %s ⇄ %s", call2, carol, dave)

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

	// The NATS node comes back with its store and catches up.
	s.docker("start", dead.ID)
	waitFor(t, startWait, leader+" back, JetStream current", func() error {
		c := s.inspect(dead.ID)
		if code, body := get("http://" + c.IP + ":8222/healthz"); code != http.StatusOK {
			return fmt.Errorf("%s /healthz: %d %s", leader, code, body)
		}
		return nil
	})
	checkCommands(t, s, call, call2)
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

// connectElsewhere connects user through the load balancer until it lands
// on another gateway than other's. The connections that landed there stay
// open meanwhile, as the load balancer counts them, then end with bye.
func connectElsewhere(s *stack, user string, other *client) *client {
	s.t.Helper()
	var there []*client
	c := connect(s, user)
	for c.upstream == other.upstream {
		there = append(there, c)
		if len(there) == gateways {
			s.t.Fatalf("the load balancer put %s on %s's gateway %s %d times", user, other.user, other.upstream, len(there))
		}
		c = connect(s, user)
	}
	for _, d := range there {
		d.bye()
	}
	return c
}

// checkScrapes waits until Prometheus scrapes, and finds up, exactly the
// running containers of each job's service.
func checkScrapes(t *testing.T, s *stack, want map[string]int) {
	t.Helper()
	ports := map[string]int{"gateway": 8080, "router": 8081, "turn": 8478}
	waitFor(t, startWait, "Prometheus scraping every gateway, router and TURN server", func() error {
		jobs, err := s.promTargets()
		if err != nil {
			return err
		}
		for job, n := range want {
			running := s.running(job)
			if len(running) != n {
				return fmt.Errorf("%d %s containers running, want %d", len(running), job, n)
			}
			for _, c := range running {
				instance := c.IP + ":" + strconv.Itoa(ports[job])
				if h := jobs[job][instance]; h != "up" {
					return fmt.Errorf("job %s: %s (%s) is %q; targets %v", job, instance, c.Name, h, jobs[job])
				}
			}
			if len(jobs[job]) != n {
				return fmt.Errorf("job %s has %d targets, want %d: %v", job, len(jobs[job]), n, jobs[job])
			}
		}
		return nil
	})
}

// streamLeader is the NATS node (its server name, which is its service)
// leading stream, as the cluster's monitoring tells.
func (s *stack) streamLeader(stream string) string {
	s.t.Helper()
	var leader string
	waitFor(s.t, wait, "the leader of "+stream, func() error {
		for _, svc := range []string{"nats-1", "nats-2", "nats-3"} {
			for _, c := range s.running(svc) {
				code, body := get("http://" + c.IP + ":8222/jsz?accounts=true&streams=true")
				if code != 200 {
					continue
				}
				var jsz struct {
					AccountDetails []struct {
						StreamDetail []struct {
							Name    string
							Cluster struct{ Leader string }
						} `json:"stream_detail"`
					} `json:"account_details"`
				}
				if err := json.Unmarshal([]byte(body), &jsz); err != nil {
					return err
				}
				for _, a := range jsz.AccountDetails {
					for _, sd := range a.StreamDetail {
						if sd.Name == stream && sd.Cluster.Leader != "" {
							leader = sd.Cluster.Leader
							return nil
						}
					}
				}
			}
		}
		return fmt.Errorf("no node names a leader of %s", stream)
	})
	return leader
}

// retryTransient sends a request until it is acknowledged, while the
// answer is one that says "retry": while JetStream elects new leaders, the
// routers answer late (error unavailable) or not at all (internal). An
// invite answered so is withdrawn by the gateway in the background, and
// until it is, the caller is still busy: a retried invite may meanwhile be
// refused with invalid_state (PROTOCOL.md, error codes).
func retryTransient(c *client, env *messages.Envelope) *messages.Envelope {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	unanswered := false // an earlier try was answered unavailable or internal
	for {
		ack, refused := c.request(&messages.Envelope{Type: env.Type, To: env.To, Call: env.Call})
		if ack != nil {
			return ack
		}
		transient := refused.Code == messages.CodeUnavailable || refused.Code == messages.CodeInternal
		withdrawing := env.Type == messages.TypeInvite && refused.Code == messages.CodeInvalidState && unanswered
		if !(transient || withdrawing) || time.Now().After(deadline) {
			c.t.Fatalf("%s: %s refused: %s %s", c, env.Type, refused.Code, refused.Message)
		}
		unanswered = unanswered || transient
		c.t.Logf("%s: %s: %s (%s), retrying", c, env.Type, refused.Code, refused.Message)
		time.Sleep(time.Second)
	}
}

// promEquals checks that expr has one sample, equal to want.
func promEquals(s *stack, expr string, want float64) error {
	got, err := promValue(s, expr)
	if err == nil && got != want {
		err = fmt.Errorf("%s = %v, want %v", expr, got, want)
	}
	return err
}

// promAtLeast checks that expr has one sample, at least want.
func promAtLeast(s *stack, expr string, want float64) error {
	got, err := promValue(s, expr)
	if err == nil && got < want {
		err = fmt.Errorf("%s = %v, want at least %v", expr, got, want)
	}
	return err
}

func promValue(s *stack, expr string) (float64, error) {
	res, err := s.promQuery(expr)
	if err != nil {
		return 0, err
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("%s: %d samples", expr, len(res))
	}
	v, _ := res[0].Value[1].(string)
	return strconv.ParseFloat(v, 64)
}

// checkDashboardQueries runs every query of the Grafana dashboard on the
// stack's Prometheus: each must be valid PromQL over what it scrapes.
func checkDashboardQueries(t *testing.T, s *stack) {
	t.Helper()
	exprs := dashboardExprs(t)
	for _, expr := range exprs {
		if _, err := s.promQuery(strings.ReplaceAll(expr, "$__rate_interval", "1m")); err != nil {
			t.Errorf("dashboard query refused by Prometheus: %v", err)
		}
	}
	t.Logf("%d dashboard queries ran", len(exprs))
}
