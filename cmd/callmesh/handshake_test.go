package main

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestHandshakeTimeout runs dev with http.handshake_timeout 200ms: a client
// that opens TCP and stalls before finishing its request (mid request line,
// mid headers, or silent) is disconnected by the server, while a normal
// client still connects and gets its welcome afterwards.
func TestHandshakeTimeout(t *testing.T) {
	const handshake = 200 * time.Millisecond
	d := startDev(t, "--http.handshake_timeout", handshake.String())
	addr := d.gateways[0]

	for _, tc := range []struct{ name, partial string }{
		{"partial request line", "GET /ws?access_token=x HT"},
		{"partial headers", "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\n"},
		{"nothing sent", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.partial); err != nil {
				t.Fatal(err)
			}
			// A deadline to fail by (10× the timeout), not a timing asserted.
			if err := c.SetReadDeadline(time.Now().Add(10 * handshake)); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c) // until the server closes
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still connected after %v (read %q)", 10*handshake, b)
			}
			// The server closes, with or without a 400 first; a reset
			// is a close too.
			t.Logf("closed by the server: %q, %v", b, err)
		})
	}

	c := dial(t, addr, devToken(t, addr, "alice"))
	c.send(t, `{"type":"ping","id":"p"}`)
	c.next(t, "pong")
}
