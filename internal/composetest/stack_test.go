//go:build compose

package composetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The images docker-compose.ci.yml runs; scripts/compose-test.sh builds
// them.
var ciImages = []string{"callmesh-ci/callmesh:local", "callmesh-ci/nats-server:local", "callmesh-ci/caddy:local", "callmesh-ci/prometheus:local"}

// Bounds of the waits. Deadlines for failing, never timings asserted.
const (
	startWait = 90 * time.Second // the stack up: NATS elects, routers open R3 buckets, gateways start
	wait      = 30 * time.Second // one expected outcome
)

// stack is one docker-compose project of docker-compose.yml with
// docker-compose.ci.yml, brought up for one test and torn down after it.
type stack struct {
	t       *testing.T
	project string
	env     []string          // the compose command's environment: secrets and ports
	lbPort  int               // the load balancer on 127.0.0.1
	promURL string            // Prometheus on 127.0.0.1
	secrets map[string]string // the secrets of .env, by variable
}

// up starts the stack with scale replicas per service given and registers
// its teardown (with the logs of every service when the test failed).
func up(t *testing.T, scale map[string]int) *stack {
	t.Helper()
	for _, img := range ciImages {
		if out, err := exec.Command("docker", "image", "inspect", img).CombinedOutput(); err != nil {
			t.Fatalf("image %s missing (bash scripts/compose-test.sh builds it): %v\n%s", img, err, out)
		}
	}
	s := &stack{t: t, project: "cmtest" + randomHex(4), lbPort: freePort(t)}
	promPort := freePort(t)
	s.promURL = fmt.Sprintf("http://127.0.0.1:%d", promPort)
	s.env = append(os.Environ(),
		"LB_PORT="+strconv.Itoa(s.lbPort),
		"PROMETHEUS_PORT="+strconv.Itoa(promPort),
		"GRAFANA_PORT="+strconv.Itoa(freePort(t)),
		"TURN_PORT="+strconv.Itoa(freeTURNPort(t)),
	)
	relayMin := freeUDPRange(t, 8)
	s.env = append(s.env, "TURN_RELAY_PORT_MIN="+strconv.Itoa(relayMin), "TURN_RELAY_PORT_MAX="+strconv.Itoa(relayMin+7))
	s.secrets = map[string]string{}
	for _, v := range []string{"CALLMESH_JWT_SECRET", "CALLMESH_TURN_SECRET", "NATS_CLUSTER_PASSWORD",
		"NATS_ROUTER_PASSWORD", "NATS_GATEWAY_PASSWORD", "NATS_EVENTS_PASSWORD"} {
		s.secrets[v] = randomHex(32)
		s.env = append(s.env, v+"="+s.secrets[v])
	}
	t.Cleanup(s.down)
	args := []string{"up", "-d", "--no-build"}
	for service, n := range scale {
		args = append(args, "--scale", fmt.Sprintf("%s=%d", service, n))
	}
	s.compose(args...)
	return s
}

// down dumps every service's log if the test failed, then removes the
// stack: containers, networks, volumes.
func (s *stack) down() {
	if s.t.Failed() {
		out, _ := s.composeOutput("logs", "--no-color", "--tail=80")
		s.t.Logf("logs of %s:\n%s", s.project, out)
	}
	if out, err := s.composeOutput("down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
		s.t.Errorf("docker-compose down: %v\n%s", err, out)
	}
}

// compose runs docker-compose on the project, failing the test on error.
func (s *stack) compose(args ...string) string {
	s.t.Helper()
	out, err := s.composeOutput(args...)
	if err != nil {
		s.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *stack) composeOutput(args ...string) (string, error) {
	cmd, cancel := s.composeCommand(args...)
	defer cancel()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// composeRun runs `docker compose run --rm args...` (options, the
// service, its command): a one-off container, without starting the
// service's dependencies again. It returns what the command printed on
// stdout.
func (s *stack) composeRun(args ...string) string {
	s.t.Helper()
	cmd, cancel := s.composeCommand(append([]string{"run", "--rm", "--no-deps", "-T"}, args...)...)
	defer cancel()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		shown := strings.Join(args, " ")
		for _, secret := range s.secrets {
			shown = strings.ReplaceAll(shown, secret, "…")
		}
		s.t.Fatalf("docker-compose run %s: %v\n%s%s", shown, err, out, stderr.String())
	}
	return string(out)
}

func (s *stack) composeCommand(args ...string) (*exec.Cmd, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	root, _ := filepath.Abs("../..") // the working directory of a test is its package's
	base := []string{"-p", s.project, "-f", filepath.Join(root, "docker-compose.yml"), "-f", filepath.Join(root, "docker-compose.ci.yml")}
	name, pre := composeCommand()
	cmd := exec.CommandContext(ctx, name, append(append(pre, base...), args...)...)
	cmd.Dir, cmd.Env = root, s.env
	return cmd, cancel
}

// composeCommand is docker-compose, or what $COMPOSE names (e.g. "docker
// compose").
func composeCommand() (string, []string) {
	if c := strings.Fields(os.Getenv("COMPOSE")); len(c) > 0 {
		return c[0], c[1:]
	}
	return "docker-compose", nil
}

// container is one container of the stack.
type container struct {
	ID, Name, IP string
	Running      bool
	ExitCode     int
}

// containers lists the containers of service, running or not.
func (s *stack) containers(service string) []container {
	s.t.Helper()
	var cs []container
	for _, id := range strings.Fields(s.compose("ps", "-q", service)) {
		cs = append(cs, s.inspect(id))
	}
	return cs
}

// running lists the running containers of service.
func (s *stack) running(service string) []container {
	s.t.Helper()
	var cs []container
	for _, c := range s.containers(service) {
		if c.Running {
			cs = append(cs, c)
		}
	}
	return cs
}

func (s *stack) inspect(id string) container {
	s.t.Helper()
	out, err := exec.Command("docker", "inspect", id).Output()
	if err != nil {
		s.t.Fatalf("docker inspect %s: %v", id, err)
	}
	var got []struct {
		ID    string
		Name  string
		State struct {
			Running  bool
			ExitCode int
		}
		NetworkSettings struct {
			Networks map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal(out, &got); err != nil || len(got) != 1 {
		s.t.Fatalf("docker inspect %s: %v", id, err)
	}
	c := container{ID: got[0].ID, Name: strings.TrimPrefix(got[0].Name, "/"), Running: got[0].State.Running, ExitCode: got[0].State.ExitCode}
	for _, n := range got[0].NetworkSettings.Networks {
		c.IP = n.IPAddress
	}
	return c
}

// byAddr is the running container of service whose address is addr
// (ip:port, as the load balancer names the gateway it chose).
func (s *stack) byAddr(service, addr string) container {
	s.t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		s.t.Fatalf("upstream %q: %v", addr, err)
	}
	for _, c := range s.running(service) {
		if c.IP == host {
			return c
		}
	}
	s.t.Fatalf("no running %s at %s", service, addr)
	return container{}
}

// docker runs a docker command, failing the test on error.
func (s *stack) docker(args ...string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lb is the load balancer's base URL: what a user opens.
func (s *stack) lb() string { return fmt.Sprintf("http://127.0.0.1:%d", s.lbPort) }

// waitReady waits until every running gateway and router answers /healthz
// with 200 at its container address, and the load balancer answers.
func (s *stack) waitReady() {
	s.t.Helper()
	for _, svc := range []struct {
		name string
		port int
	}{{"gateway", 8080}, {"router", 8081}, {"turn", 8478}} {
		for _, c := range s.running(svc.name) {
			u := fmt.Sprintf("http://%s:%d/healthz", c.IP, svc.port)
			waitFor(s.t, startWait, c.Name+" ready", func() error {
				if code, body := get(u); code != http.StatusOK {
					return fmt.Errorf("%s: %d %q", u, code, body)
				}
				return nil
			})
		}
	}
	waitFor(s.t, wait, "the load balancer", func() error {
		if code, body := get(s.lb() + "/callmesh.js"); code != http.StatusOK {
			return fmt.Errorf("/callmesh.js: %d %.80q", code, body)
		}
		return nil
	})
}

// devToken gets a token for user from the demo's sign-in, through the load
// balancer.
func (s *stack) devToken(user string) string {
	s.t.Helper()
	var token string
	waitFor(s.t, wait, "a dev token for "+user, func() error {
		code, body := get(s.lb() + "/dev/token?user=" + url.QueryEscape(user))
		if code != http.StatusOK {
			return fmt.Errorf("/dev/token: %d %q", code, body)
		}
		var got struct{ Token string }
		if err := json.Unmarshal([]byte(body), &got); err != nil || got.Token == "" {
			return fmt.Errorf("/dev/token answered %q (%v)", body, err)
		}
		token = got.Token
		return nil
	})
	return token
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
