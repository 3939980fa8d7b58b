package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestKeyedLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newKeyedLimiter(1, 2) // one a second, bursts of 2
	for i := range 2 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
	}
	ok, retry := l.allow("a", now)
	if ok || retry <= 0 || retry > time.Second {
		t.Fatalf("third attempt: ok %v, retry %v; want refused, retry in (0, 1s]", ok, retry)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another key shares a's bucket")
	}
	if ok, _ := l.allow("a", now.Add(time.Second)); !ok {
		t.Fatal("a's bucket did not refill")
	}

	// Full buckets are forgotten: they are the same as none.
	later := now.Add(time.Hour)
	l.allow("c", later)
	if _, ok := l.keys["a"]; ok || len(l.keys) != 1 {
		t.Fatalf("after the sweep: %d keys", len(l.keys))
	}

	// empty takes the burst away.
	l.empty("c", later)
	if ok, _ := l.allow("c", later); ok {
		t.Fatal("allowed right after empty")
	}

	var none *keyedLimiter // a rate of 0
	if newKeyedLimiter(0, 5) != nil {
		t.Fatal("a rate of 0 makes a limiter")
	}
	if ok, _ := none.allow("x", now); !ok {
		t.Fatal("no limit refused")
	}
	none.empty("x", now)
}

// A limiter never holds more than max keys, however many come at once,
// and a new key always gets its burst.
func TestKeyedLimiterBounded(t *testing.T) {
	l := newKeyedLimiter(1, 1)
	l.max = 100
	now := time.Unix(1000, 0)
	for i := range 1000 {
		if ok, _ := l.allow(fmt.Sprint(i), now); !ok {
			t.Fatalf("key %d refused its first attempt", i)
		}
		if len(l.keys) > l.max {
			t.Fatalf("%d keys, max %d", len(l.keys), l.max)
		}
	}
}

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"@", "@"}, // not ip:port (a unix socket): taken as is
	} {
		if got := sourceKey(tc.addr); got != tc.want {
			t.Errorf("sourceKey(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// checkOrigin refuses exactly what websocket.Accept refuses with 403 for
// its origin, so that serveWS can answer before the token is looked at.
func TestCheckOriginMirrorsAccept(t *testing.T) {
	patterns := [][]string{nil, {"*.example"}, {"https://*.example.com"}, {"APP.Example.COM"}, {"*"}, {"a[b-c].example"}}
	origins := []string{"", "http://gw.test:8080", "http://GW.TEST:8080", "https://gw.test:8080", "http://gw.test",
		"https://a.example", "https://a.b.example", "https://example", "http://a.example:1", "https://x.example.com",
		"http://x.example.com", "https://app.example.com", "null", "::", "http://[::1]:80", "file://", "https://ab.example"}
	for _, p := range patterns {
		for _, origin := range origins {
			r := httptest.NewRequest(http.MethodGet, "http://gw.test:8080/ws", nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Sec-WebSocket-Version", "13")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			if origin != "" {
				r.Header.Set("Origin", origin)
			}
			w := httptest.NewRecorder() // cannot be hijacked: an allowed origin gets 501
			_, _ = websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: p})
			acceptRefuses := w.Code == http.StatusForbidden
			if err := checkOrigin(r, p); (err != nil) != acceptRefuses {
				t.Errorf("patterns %q, origin %q: checkOrigin %v, Accept answers %d", p, origin, err, w.Code)
			}
		}
	}
}
