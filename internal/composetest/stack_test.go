//go:build compose

package composetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// promTargets is what Prometheus says of its targets: job → instance →
// health ("up", "down", "unknown").
func (s *stack) promTargets() (map[string]map[string]string, error) {
	var got struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string
				Health string
			}
		}
	}
	if err := s.promGet("/api/v1/targets", &got); err != nil {
		return nil, err
	}
	jobs := map[string]map[string]string{}
	for _, t := range got.Data.ActiveTargets {
		job := t.Labels["job"]
		if jobs[job] == nil {
			jobs[job] = map[string]string{}
		}
		jobs[job][t.Labels["instance"]] = t.Health
	}
	return jobs, nil
}

// promQuery runs an instant query and returns its result vector.
func (s *stack) promQuery(expr string) ([]promSample, error) {
	var got struct {
		Status string
		Error  string
		Data   struct {
			Result []promSample
		}
	}
	if err := s.promGet("/api/v1/query?query="+url.QueryEscape(expr), &got); err != nil {
		return nil, err
	}
	if got.Status != "success" {
		return nil, fmt.Errorf("%s: %s", expr, got.Error)
	}
	return got.Data.Result, nil
}

// promSample is one sample of an instant vector.
type promSample struct {
	Metric map[string]string
	Value  [2]any // time, value as a string
}

func (s *stack) promGet(path string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.promURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return err
	}
	if err := json.Unmarshal(b.Bytes(), v); err != nil {
		return fmt.Errorf("%s: %d %.200q: %w", path, resp.StatusCode, b.String(), err)
	}
	return nil
}

// get is the status and body of GET u; 0 if nothing answers.
func get(u string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// freePort is a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeTURNPort is a port free on 127.0.0.1 for both TCP and UDP.
func freeTURNPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := freePort(t)
		if udpFree(port) {
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// freeUDPRange is the first of n consecutive UDP ports free on 127.0.0.1,
// for the TURN relays (so that the stack does not meet another TURN server
// of this machine, such as `callmesh dev`'s).
func freeUDPRange(t *testing.T, n int) int {
	t.Helper()
	for base := 40000; base+n <= 48000; base += n {
		free := true
		for p := base; p < base+n && free; p++ {
			free = udpFree(p)
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive UDP ports free in 40000-48000", n)
	return 0
}

func udpFree(port int) bool {
	c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
