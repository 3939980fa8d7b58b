package meshtest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
)

// idleConns is how many connections BenchmarkIdleConnections opens.
const idleConns = 2000

// BenchmarkIdleConnections opens idleConns authenticated connections (each
// of its own user, each welcomed) to one gateway and leaves them idle, and
// reports what each costs the process, which runs the NATS server, the
// routers and the gateway: live heap after a collection (heap-B/conn),
// goroutines (goroutines/conn) and resident memory (rss-B/conn).
//
// The clients are bare TCP connections that sent the upgrade request and
// read the welcome: no goroutine, no buffer, no WebSocket state, so what is
// measured is the server side's (less a net.Conn each, some 200 bytes).
// Run it with -benchtime=1x; each iteration opens and closes the lot.
func BenchmarkIdleConnections(b *testing.B) {
	m := Start(b, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) {
		c.PingInterval = time.Hour // the clients do not answer pings
	}})
	u, err := url.Parse(m.Gateways[0].URL)
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, idleConns)
	for i := range tokens {
		tokens[i] = m.Token("idle-" + strconv.Itoa(i))
	}
	closeIdle(b, m.Gateways[0], openIdle(b, u, tokens[:100]), -1) // pools, lazily started goroutines
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		before := measure()
		b.StartTimer()
		conns := openIdle(b, u, tokens)
		b.StopTimer()
		after := measure()
		b.ReportMetric(float64(int64(after.heap)-int64(before.heap))/idleConns, "heap-B/conn")
		b.ReportMetric(float64(int64(after.stack)-int64(before.stack))/idleConns, "stack-B/conn")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/idleConns, "goroutines/conn")
		if before.rss > 0 {
			b.ReportMetric(float64(int64(after.rss)-int64(before.rss))/idleConns, "rss-B/conn")
		}
		closeIdle(b, m.Gateways[0], conns, before.goroutines)
		b.StartTimer()
	}
	b.ReportMetric(float64(idleConns*b.N)/b.Elapsed().Seconds(), "conns/s")
}

// openIdle connects with each token from a few goroutines at once and
// returns the connections once each has its welcome.
func openIdle(b *testing.B, u *url.URL, tokens []string) []net.Conn {
	const workers = 16
	conns := make([]net.Conn, len(tokens))
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(tokens); i += workers {
				c, err := dialIdle(u, tokens[i])
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return conns
}

// closeIdle closes conns and waits until the gateway has let their
// sessions go (past their resume grace) and, unless goroutines is -1, the
// process is back to that many goroutines.
func closeIdle(b *testing.B, g *Gateway, conns []net.Conn, goroutines int) {
	for _, c := range conns {
		_ = c.Close()
	}
	natstest.WaitFor(b, "the idle connections gone", func() error {
		if n := g.Connections(); n != 0 {
			return fmt.Errorf("%d connections open", n)
		}
		if n := runtime.NumGoroutine(); goroutines >= 0 && n > goroutines {
			return fmt.Errorf("%d goroutines, %d before", n, goroutines)
		}
		return nil
	})
}

// usage is what the process uses: live heap, goroutine stacks, goroutines
// and resident memory.
type usage struct {
	heap, stack, rss uint64
	goroutines       int
}

// measure collects garbage (as settled does) and returns the usage.
func measure() usage {
	var u usage
	u.heap, u.goroutines = settled()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u.stack = ms.StackInuse
	u.rss = rss()
	return u
}

// dialIdle upgrades a TCP connection to u with token and reads the first
// frame, which must be the welcome. It keeps nothing but the connection.
func dialIdle(u *url.URL, token string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", u.Host, Wait)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(Wait))
	fmt.Fprintf(c, "GET %s?access_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		u.Path, url.QueryEscape(token), u.Host)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	frame, err := readServerFrame(br)
	if err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.Contains(frame, []byte(`"type":"welcome"`)) {
		c.Close()
		return nil, fmt.Errorf("first frame is not welcome: %.80q", frame)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// readServerFrame reads one unmasked, unfragmented frame's payload.
func readServerFrame(r io.Reader) ([]byte, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[:2]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(r, h[:8]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}

// rss is the process's resident memory in bytes, 0 where unknown.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
