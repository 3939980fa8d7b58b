//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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

// startCluster writes a config per node (cluster routes to every node,
// JetStream in its own store dir) and starts the nodes.
func startCluster(t testing.TB, bin, dir string, size int) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: bin, dir: dir}
	for i := range size {
		c.nodes = append(c.nodes, &natsNode{
			name: fmt.Sprintf("n%d", i+1), port: freePort(t), clusterPort: freePort(t), monitorPort: freePort(t),
		})
	}
	var routes []string
	for _, n := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.clusterPort))
	}
	for _, n := range c.nodes {
		store := filepath.Join(dir, n.name+"-js")
		n.conf = filepath.Join(dir, n.name+".conf")
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
			t.Fatal(err)
		}
		n.proc = start(t, dir, n.name, bin, nil, "-c", n.conf)
	}
	for _, n := range c.nodes {
		c.waitHealthy(n, 30*time.Second)
	}
	return c
}

// URLs is every node's client URL, comma-separated, for nats.url.
func (c *cluster) URLs() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ",")
}

// waitHealthy waits until n answers /healthz with 200 (JetStream up and
// current) and knows the JetStream meta leader: before that, creating a
// bucket times out.
func (c *cluster) waitHealthy(n *natsNode, d time.Duration) {
	c.t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", n.monitorPort)
	waitFor(c.t, d, func() error {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: /healthz %s", n.name, resp.Status)
		}
		resp, err = http.Get(base + "/jsz")
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		defer resp.Body.Close()
		var jsz struct {
			Meta struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
			return fmt.Errorf("%s: /jsz: %w", n.name, err)
		}
		if jsz.Meta.Leader == "" {
			return fmt.Errorf("%s: no JetStream meta leader yet", n.name)
		}
		return nil
	})
}

// restart starts a killed node again with the same config and store.
func (c *cluster) restart(n *natsNode) {
	c.t.Helper()
	n.proc.run()
	c.waitHealthy(n, 30*time.Second)
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
