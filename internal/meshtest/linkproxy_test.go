package meshtest

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// linkProxy is a TCP proxy between a component and its NATS server, for
// faults of the link itself: Pause stops what the component sends from
// reaching the server (the bytes wait in the proxy), Resume lets them on,
// and Cut drops every connection with a reset, losing what waited, and
// refuses new ones, as a SIGKILL of the component would (or, until Heal,
// a network that is down).
type linkProxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	gate   *sync.Cond // signalled when paused or cut changes
	paused bool       // guarded by mu
	cut    bool       // guarded by mu
	conns  []*net.TCPConn
}

// startLinkProxy proxies a listener on loopback to upstream (host:port)
// until the test ends.
func startLinkProxy(t testing.TB, upstream string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, upstream: upstream}
	p.gate = sync.NewCond(&p.mu)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
	})
	return p
}

// URL is the NATS URL of the proxy.
func (p *linkProxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *linkProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		down, upc := c.(*net.TCPConn), up.(*net.TCPConn)
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			reset(down)
			reset(upc)
			continue
		}
		p.conns = append(p.conns, down, upc)
		p.mu.Unlock()
		go p.pipe(upc, down, true)
		go p.pipe(down, upc, false)
	}
}

// pipe copies from src to dst; toServer copies wait while paused.
func (p *linkProxy) pipe(dst, src *net.TCPConn, toServer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && toServer && !p.wait() {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite()
			}
			return
		}
	}
}

// wait blocks while paused, and reports false once cut.
func (p *linkProxy) wait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.paused && !p.cut {
		p.gate.Wait()
	}
	return !p.cut
}

// Pause holds back from now on what the component sends to the server.
func (p *linkProxy) Pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

// Resume sends on what was held back, and what comes next.
func (p *linkProxy) Resume() {
	p.mu.Lock()
	p.paused = false
	p.gate.Broadcast()
	p.mu.Unlock()
}

// Cut resets every connection, dropping what was held back, and refuses
// the component's reconnects.
func (p *linkProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := p.conns
	p.conns = nil
	p.gate.Broadcast()
	p.mu.Unlock()
	for _, c := range conns {
		reset(c)
	}
}

// Heal accepts the component's connections again after a Cut.
func (p *linkProxy) Heal() {
	p.mu.Lock()
	p.cut, p.paused = false, false
	p.mu.Unlock()
}

// reset closes c with a TCP reset, dropping what it has not sent.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
