//go:build compose

package composetest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

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
