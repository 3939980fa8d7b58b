package meshtest

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// A user's connections are capped across the mesh (the newest is closed
// with 4004); a gateway's are capped before the upgrade (503).
func TestConnectionLimits(t *testing.T) {
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.MaxConnsPerUser = 2 }})
	m.Dial(0, "dora")
	m.Dial(1, "dora")
	third, _, err := m.DialRaw(0, m.Token("dora"), "")
	if err == nil {
		t.Fatalf("third connection got a welcome: %+v", third.Welcome)
	}
	if got := websocket.CloseStatus(err); got != messages.CloseTooManyConns {
		t.Fatalf("third connection: %v, want close %d", err, messages.CloseTooManyConns)
	}
	m.Dial(1, "eli") // other users are unaffected

	full := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) { c.MaxConns = 1 }})
	full.Dial(0, "first")
	_, resp, err := full.DialRaw(0, full.Token("second"), "")
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection to a full gateway: %v %v", resp, err)
	}
}

// A gateway with max_conns 30 dialled 60 times at once welcomes exactly 30
// and answers the others 503 before the upgrade.
func TestMaxConnsExact(t *testing.T) {
	const max, dials = 30, 60
	m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) { c.MaxConns = max }})
	tokens := make([]string, dials)
	for i := range tokens {
		tokens[i] = m.Token(fmt.Sprintf("user-%d", i))
	}
	var (
		mu             sync.Mutex
		welcomed, full int
		other          []string
		start, wg      = make(chan struct{}), sync.WaitGroup{}
	)
	for _, token := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, resp, err := m.DialRaw(0, token, "")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				welcomed++
			case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
				full++
			default:
				other = append(other, fmt.Sprintf("%v (%v)", err, resp))
			}
		}()
	}
	close(start)
	wg.Wait()
	if welcomed != max || full != dials-max || len(other) > 0 {
		t.Fatalf("%d welcomed, %d refused with 503, others %q; want %d and %d", welcomed, full, other, max, dials-max)
	}
}
