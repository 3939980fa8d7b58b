//go:build faults

package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// natsNode is one nats-server process of the cluster, with its own ports,
// config file and JetStream store, so that it can be killed and restarted
// with its state.
type natsNode struct {
	name                           string
	port, clusterPort, monitorPort int
	conf                           string
	proc                           *proc
}

// URL is the node's client URL.
func (n *natsNode) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// cluster is a 3-node NATS cluster with JetStream on loopback.
type cluster struct {
	t     testing.TB
	bin   string
	dir   string
	nodes []*natsNode
}

// clusterReady bounds the wait for a fresh or restarted cluster: a
// fresh 3-node cluster was ready in 0.3–0.6 s (p50–p90 of 40 starts here),
// 7 s at most (in 1 start in 15 the first leader election failed, and the
// next waits out a Raft election timeout of 4–9 s).
const clusterReady = 30 * time.Second

// startCluster writes a config per node and starts the nodes, then waits
// until the cluster is ready (see ready). A node that exits at startup
// (its port taken by another process meanwhile) makes it start again on
// other ports, twice at most.
func startCluster(t testing.TB, bin, dir string, size int) *cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c := &cluster{t: t, bin: bin, dir: filepath.Join(dir, fmt.Sprintf("nats%d", attempt))}
		if err := os.MkdirAll(c.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.start(size)
		err := poll(clusterReady, c.ready)
		if err == nil {
			return c
		}
		var died errNodeDied
		if !errors.As(err, &died) || attempt == 3 {
			t.Fatalf("NATS cluster not ready after %v: %v", clusterReady, err)
		}
		t.Logf("NATS cluster, attempt %d: %v; starting it again on other ports", attempt, err)
		for _, n := range c.nodes {
			n.proc.kill()
		}
	}
}

// start writes a config per node and starts the nodes. Each node's routes
// list every node, itself included: nats-server skips the route to
// itself, and sizes a fresh cluster's JetStream meta group from the
// number of routes, so leaving itself out would make a node that starts
// before the others expect a cluster of 2.
func (c *cluster) start(size int) {
	for i := range size {
		c.nodes = append(c.nodes, &natsNode{
			name: fmt.Sprintf("n%d", i+1), port: freePort(c.t), clusterPort: freePort(c.t), monitorPort: freePort(c.t),
		})
	}
	var routes []string
	for _, n := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.clusterPort))
	}
	for _, n := range c.nodes {
		store := filepath.Join(c.dir, n.name+"-js")
		n.conf = filepath.Join(c.dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  sync_interval: 10s
}
cluster {
  name: faults
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.port, n.monitorPort, store, n.clusterPort, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			c.t.Fatal(err)
		}
		n.proc = start(c.t, c.dir, n.name, c.bin, nil, "-c", n.conf)
	}
}

// URLs is every node's client URL, comma-separated, for nats.url.
func (c *cluster) URLs() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// errNodeDied is a node process that has exited.
type errNodeDied struct {
	name, why string
}

func (e errNodeDied) Error() string { return e.name + " exited: " + e.why }

// ready reports why the cluster cannot take R3 buckets yet, or nil: every
// node runs and is itself (its monitor port is not answered by another
// node), answers /healthz with 200 (JetStream current with the meta
// leader), has a route to every other node, and agrees on one meta leader
// of a meta group of all the nodes, all current. Before that, creating a
// bucket times out, or fails (an R3 bucket on two live nodes) until
// someone gives up.
func (c *cluster) ready() error {
	leaders := map[string]bool{}
	var leader *natsNode
	for _, n := range c.nodes {
		if n.proc.wait(0) {
			return errNodeDied{n.name, fmt.Sprintf("%v\n%s", n.proc.exitErr(), tail(n.proc.log))}
		}
		var varz struct {
			Name string `json:"server_name"`
		}
		if err := n.monitor("/varz", &varz); err != nil {
			return err
		}
		if varz.Name != n.name {
			return fmt.Errorf("%s: its monitor port %d is answered by %q", n.name, n.monitorPort, varz.Name)
		}
		if err := n.monitor("/healthz", nil); err != nil {
			return err
		}
		var routez struct {
			Routes []struct {
				RemoteName string `json:"remote_name"`
			} `json:"routes"`
		}
		if err := n.monitor("/routez", &routez); err != nil {
			return err
		}
		remotes := map[string]bool{}
		for _, r := range routez.Routes {
			remotes[r.RemoteName] = true
		}
		for _, m := range c.nodes {
			if m != n && !remotes[m.name] {
				return fmt.Errorf("%s: no route to %s yet", n.name, m.name)
			}
		}
		var jsz struct {
			Meta struct {
				Leader   string `json:"leader"`
				Size     int    `json:"cluster_size"`
				Replicas []struct {
					Name    string `json:"name"`
					Current bool   `json:"current"`
				} `json:"replicas"`
			} `json:"meta_cluster"`
		}
		if err := n.monitor("/jsz", &jsz); err != nil {
			return err
		}
		if jsz.Meta.Leader == "" {
			return fmt.Errorf("%s: no JetStream meta leader yet", n.name)
		}
		if jsz.Meta.Size != len(c.nodes) {
			return fmt.Errorf("%s: JetStream meta group of %d, want %d", n.name, jsz.Meta.Size, len(c.nodes))
		}
		leaders[jsz.Meta.Leader] = true
		if jsz.Meta.Leader == n.name {
			leader = n
			current := 0
			for _, r := range jsz.Meta.Replicas {
				if r.Current {
					current++
				}
			}
			if current != len(c.nodes)-1 {
				return fmt.Errorf("%s (meta leader): %d of %d followers current", n.name, current, len(c.nodes)-1)
			}
		}
	}
	if len(leaders) != 1 || leader == nil {
		return fmt.Errorf("no agreed JetStream meta leader among the nodes yet: %v", slices.Collect(maps.Keys(leaders)))
	}
	return nil
}

// monitor GETs path from n's monitoring port into v (if not nil),
// requiring 200.
func (n *natsNode) monitor(path string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", n.monitorPort, path))
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s %s: %s", n.name, path, resp.Status, bytes.TrimSpace(b))
	}
	if v == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %s: %w", n.name, path, err)
	}
	return nil
}

// restart starts a killed node again with the same config and store, and
// waits until the cluster is ready again.
func (c *cluster) restart(n *natsNode) {
	c.t.Helper()
	n.proc.run()
	waitFor(c.t, clusterReady, c.ready)
}

// waitStreams waits until every live node hosts a replica of each named
// stream and the stream has a leader. A gateway started before that can
// fail to create its heartbeat ("no response from stream") and exit.
func (c *cluster) waitStreams(d time.Duration, names ...string) {
	c.t.Helper()
	waitFor(c.t, d, func() error {
		for _, n := range c.nodes {
			if n.proc.wait(0) {
				continue
			}
			streams, err := n.streams()
			if err != nil {
				return err
			}
			for _, name := range names {
				leader, ok := streams[name]
				if !ok || leader == "" {
					return fmt.Errorf("%s: stream %s not ready (hosted %v, leader %q)", n.name, name, ok, leader)
				}
			}
		}
		return nil
	})
}

// streams maps the streams n hosts to their leaders, from its /jsz.
func (n *natsNode) streams() (map[string]string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true", n.monitorPort))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.name, err)
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			Streams []struct {
				Name    string `json:"name"`
				Cluster struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return nil, fmt.Errorf("%s: /jsz: %w", n.name, err)
	}
	m := map[string]string{}
	for _, a := range jsz.Accounts {
		for _, s := range a.Streams {
			m[s.Name] = s.Cluster.Leader
		}
	}
	return m, nil
}

// streamLeader is the node leading the stream whose name contains substr,
// as some live node's /jsz reports it, or nil if none is known.
func (c *cluster) streamLeader(substr string) *natsNode {
	for _, n := range c.nodes {
		if n.proc.wait(0) {
			continue
		}
		streams, err := n.streams()
		if err != nil {
			continue
		}
		for name, leader := range streams {
			if !strings.Contains(name, substr) {
				continue
			}
			for _, m := range c.nodes {
				if m.name == leader {
					return m
				}
			}
		}
	}
	return nil
}
