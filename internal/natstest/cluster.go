package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterWait bounds how long Cluster waits for the cluster to form: route
// connections, the JetStream meta leader election and a first replicated
// stream take seconds under -race on a busy machine.
const ClusterWait = 30 * time.Second

// Cluster runs n embedded servers with JetStream (n1, n2, …) as one NATS
// cluster on loopback, each with its own store in t's temp dir, all
// stopped with the test. It returns once the cluster is formed: every node
// has routes to all the others, all agree on a JetStream meta leader, and
// a stream with n replicas can be created. Clients connect to one node
// each with its ClientURL; interest spreads between the nodes
// asynchronously, as in production.
func Cluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	if n < 2 {
		t.Fatalf("natstest: a cluster needs 2 nodes or more, not %d", n)
	}
	// JetStream clusters only when routes are configured at startup, so
	// the route ports are chosen before the servers start rather than
	// with Port -1.
	ports := freePorts(t, n)
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	nodes := make([]*server.Server, n)
	for i := range n {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "meshtest", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes, // a route to itself is ignored
		})
		if err != nil {
			t.Fatalf("natstest: node %d: %v", i+1, err)
		}
		srv.Start()
		t.Cleanup(srv.Shutdown)
		if !srv.ReadyForConnections(Wait) {
			t.Fatalf("natstest: node %d not ready within %v", i+1, Wait)
		}
		if srv.ClusterAddr() == nil { // another process took the port meanwhile
			t.Fatalf("natstest: node %d could not listen for routes on port %d", i+1, ports[i])
		}
		nodes[i] = srv
	}
	waitFormed(t, nodes)
	return nodes
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // held until all are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// waitFormed waits until nodes form one cluster with a working JetStream:
// it polls, with a deadline, what each node reports, then creates and
// deletes a stream replicated on every node.
func waitFormed(t testing.TB, nodes []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(ClusterWait)
	poll := func(what string, cond func() error) {
		t.Helper()
		for {
			err := cond()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("natstest: cluster not formed within %v: %s: %v", ClusterWait, what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	poll("routes and meta leader", func() error { return formed(nodes) })
	nc, err := nats.Connect(nodes[0].ClientURL(), nats.Name("natstest-probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.StreamConfig{Name: "natstest_probe", Subjects: []string{"natstest.probe"}, Replicas: len(nodes)}
	poll("a stream replicated on every node", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return err
		}
		if _, err := js.Publish(ctx, "natstest.probe", nil); err != nil {
			return err
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatalf("natstest: delete probe stream: %v", err)
	}
}

// formed reports why nodes are not one cluster yet: a node lacks a route to
// another, or the nodes do not all know one and the same meta leader.
func formed(nodes []*server.Server) error {
	leader := ""
	leaders := 0
	for _, srv := range nodes {
		rz, err := srv.Routez(nil)
		if err != nil {
			return err
		}
		for _, other := range nodes {
			if other != srv && !slices.ContainsFunc(rz.Routes, func(r *server.RouteInfo) bool { return r.RemoteName == other.Name() }) {
				return fmt.Errorf("%s has no route to %s", srv.Name(), other.Name())
			}
		}
		jsz, err := srv.Jsz(nil)
		if err != nil {
			return err
		}
		switch {
		case jsz.Meta == nil || jsz.Meta.Leader == "":
			return fmt.Errorf("%s knows no JetStream meta leader", srv.Name())
		case leader != "" && jsz.Meta.Leader != leader:
			return fmt.Errorf("%s has meta leader %s, another node %s", srv.Name(), jsz.Meta.Leader, leader)
		case !srv.JetStreamIsCurrent():
			return fmt.Errorf("%s: JetStream meta state not current", srv.Name())
		}
		leader = jsz.Meta.Leader
		if srv.JetStreamIsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return errors.New("no single node holds the meta leadership yet")
	}
	return nil
}
