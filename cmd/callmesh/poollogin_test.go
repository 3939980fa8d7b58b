package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/callmesh/callmesh/internal/natstest"
)

// poolNATS runs a NATS server configured as deploy/helm/values-nats.yaml
// configures the nats chart: JetStream, and the authorization of `callmesh
// nats-auth --gateway-names gateway` included from its own file, with the
// passwords in the environment. It returns the server's URL.
func poolNATS(t *testing.T, log *natstest.Violations) string {
	t.Helper()
	dir := t.TempDir()
	var auth bytes.Buffer
	if err := runNATSAuth(&Config{NATS: natsConfig{Prefix: "callmesh"}}, "gateway", &auth); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("jetstream { store_dir: %q, sync_interval: 10s }\ninclude callmesh-auth.conf\n", filepath.Join(dir, "js"))
	for name, content := range map[string][]byte{"callmesh-auth.conf": auth.Bytes(), "nats.conf": []byte(conf)} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []string{"ROUTER", "GATEWAY", "EVENTS"} {
		t.Setenv("NATS_"+role+"_PASSWORD", strings.ToLower(role)+"-test-password")
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoSigs = "127.0.0.1", -1, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetLogger(log, false, false)
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(wait) {
		t.Fatal("nats server not ready")
	}
	return srv.ClientURL()
}

// The Helm chart runs its gateways as one pool under one NATS login
// (deploy/kubernetes.md): every pod logs in as `gateway` and is named
// `gateway`, so all share the permissions of `callmesh nats-auth
// --gateway-names gateway`, and each has its own gateway id. Two such
// gateways carry a call between them; when one drains (a pod stopped), its
// client resumes on the other with the call, and signal flows both ways;
// NATS refuses nothing the whole time, shutdown included.
func TestGatewayPoolSharesOneLogin(t *testing.T) {
	log := &natstest.Violations{}
	url := poolNATS(t, log)
	// Registered before the components, so it runs after they have stopped.
	t.Cleanup(func() {
		if lines := log.All(); len(lines) > 0 {
			t.Errorf("the pool needed more than its login allows:\n%s", strings.Join(lines, "\n"))
		}
	})
	secret := strings.Repeat("s", 40)
	run(t, routerListening, "router", "--nats.url", url, "--nats.user", "router",
		"--nats.password", "router-test-password", "--router.http_addr", "127.0.0.1:0").waitHealth(t, 200, "ok\n")
	var gateways []*component
	for range 2 {
		g := run(t, gatewayListening, "gateway", "--nats.url", url, "--nats.user", "gateway",
			"--nats.password", "gateway-test-password", "--gateway.name", "gateway",
			"--http.addr", "127.0.0.1:0", "--http.drain_timeout", "2s", "--jwt.secret", secret)
		g.waitHealth(t, 200, "ok\n")
		gateways = append(gateways, g)
	}
	token := func(user string) string {
		var out, errs bytes.Buffer
		if code := Run(context.Background(), []string{"token", "--user", user, "--jwt.secret", secret}, nil, &out, &errs); code != 0 {
			t.Fatalf("token: exit %d: %s", code, errs.String())
		}
		return strings.TrimSpace(out.String())
	}
	addr := func(g *component) string { return strings.TrimPrefix(g.base, "http://") }

	alice := dial(t, addr(gateways[0]), token("alice"))
	bob := dial(t, addr(gateways[1]), token("bob"))
	alice.send(t, `{"type":"invite","id":"1","to":"bob"}`)
	call, _ := bob.next(t, "incoming")["call"].(string)
	bob.send(t, fmt.Sprintf(`{"type":"accept","id":"2","call":%q}`, call))
	alice.next(t, "accepted")
	alice.send(t, fmt.Sprintf(`{"type":"signal","id":"s1","call":%q,"data":{"n":1}}`, call))
	if f := bob.next(t, "signal"); f["from"] != "alice" {
		t.Fatalf("signal from %v, want alice", f["from"])
	}

	// Stop alice's gateway, as Kubernetes stops a pod: it drains.
	gateways[0].cancel()
	alice.next(t, "goaway")
	resumed := dialResume(t, addr(gateways[1]), token("alice"), alice.resume)
	if resumed.data["resumed"] != true {
		t.Fatalf("welcome on the other gateway: %v, want resumed", resumed.data)
	}
	select {
	case err := <-alice.closed:
		if got := websocket.CloseStatus(err); got != 4001 {
			t.Errorf("old connection closed with %v (%v), want 4001 taken over", got, err)
		}
	case <-time.After(wait):
		t.Fatal("old connection not closed")
	}
	bob.send(t, fmt.Sprintf(`{"type":"signal","id":"s2","call":%q,"data":{"n":2}}`, call))
	if f := resumed.next(t, "signal"); f["from"] != "bob" {
		t.Fatalf("signal after resume from %v, want bob", f["from"])
	}
	resumed.send(t, fmt.Sprintf(`{"type":"hangup","id":"3","call":%q}`, call))
	if f := bob.next(t, "ended"); f["call"] != call {
		t.Fatalf("ended %v, want call %s", f, call)
	}
	gateways[0].stop(t)
}
