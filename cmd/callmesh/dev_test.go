package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/callmesh/callmesh/internal/natstest"
)

// wait bounds how long the test waits for anything; never a timing asserted.
const wait = 15 * time.Second

// syncBuffer is a bytes.Buffer that Run may write while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// devRun is a `callmesh dev` running in-process.
type devRun struct {
	gateways       []string // host:port of each gateway
	cancel         context.CancelFunc
	exit           chan int
	stdout, stderr syncBuffer
}

// startDev runs `callmesh dev` on free ports with args added, until the
// test ends, and waits until it is ready.
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &devRun{cancel: cancel, exit: make(chan int, 1)}
	t.Cleanup(cancel)
	args = append([]string{"dev", "--http", "127.0.0.1:0", "--dev.nats_port", "0",
		"--dev.store_dir", t.TempDir(), "--log.level", "warn"}, args...)
	go func() { d.exit <- Run(ctx, args, nil, &d.stdout, &d.stderr) }()

	gatewayLine := regexp.MustCompile(`(?m)^  gateway (\d+) +ws://(\S+)/ws`)
	natstest.WaitFor(t, "dev prints its gateways", func() error {
		select {
		case code := <-d.exit:
			t.Fatalf("dev exited with %d:\n%s\n%s", code, d.stdout.String(), d.stderr.String())
		default:
		}
		out := d.stdout.String()
		if !regexp.MustCompile(`(?m)^ready`).MatchString(out) {
			return fmt.Errorf("not ready:\n%s", out)
		}
		for _, m := range gatewayLine.FindAllStringSubmatch(out, -1) {
			d.gateways = append(d.gateways, m[2])
		}
		return nil
	})
	return d
}

// TestDev runs `callmesh dev --gateways 2` in-process, calls bob on gateway 1
// from alice on gateway 0, and stops it: both clients get 1001.
func TestDev(t *testing.T) {
	d := startDev(t, "--gateways", "2")
	gateways, cancel, exit, stderr := d.gateways, d.cancel, d.exit, &d.stderr
	if len(gateways) != 2 {
		t.Fatalf("want 2 gateways in the banner, got %q:\n%s", gateways, d.stdout.String())
	}

	for _, addr := range gateways {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s/healthz: %s", addr, resp.Status)
		}
	}
	alice := dial(t, gateways[0], devToken(t, gateways[0], "alice"))
	bob := dial(t, gateways[1], devToken(t, gateways[1], "bob"))
	alice.send(t, `{"type":"invite","id":"1","to":"bob"}`)
	if f := bob.next(t, "incoming"); f["from"] != "alice" {
		t.Errorf("incoming from %v, want alice", f["from"])
	}

	cancel()
	for _, c := range []*client{alice, bob} {
		select {
		case err := <-c.closed:
			if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
				t.Errorf("%s: closed with %v (%v), want 1012", c.user, got, err)
			}
		case <-time.After(wait):
			t.Fatalf("%s: not closed", c.user)
		}
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit code %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(wait):
		t.Fatal("dev did not stop")
	}
}

func devToken(t *testing.T, addr, user string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/dev/token?user=" + url.QueryEscape(user))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.Token == "" {
		t.Fatalf("dev token for %s: %s, %v", user, resp.Status, err)
	}
	return body.Token
}

// client is a WebSocket client whose frames are read in the background.
type client struct {
	user    string
	ws      *websocket.Conn
	frames  chan map[string]any
	closed  chan error     // the error that ended reading
	welcome map[string]any // the first frame
	resume  string         // welcome.data.resume
	data    map[string]any // welcome.data
}

func dial(t *testing.T, addr, token string) *client {
	t.Helper()
	return dialResume(t, addr, token, "")
}

// dialResume connects with the resume token resume, if not empty, and
// reads the welcome, which must be the first frame.
func dialResume(t *testing.T, addr, token, resume string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	u := "ws://" + addr + "/ws?access_token=" + url.QueryEscape(token)
	if resume != "" {
		u += "&resume=" + url.QueryEscape(resume)
	}
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	c := &client{ws: ws, frames: make(chan map[string]any, 64), closed: make(chan error, 1)}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("%s: no welcome: %v", addr, err)
	}
	if err := json.Unmarshal(b, &c.welcome); err != nil || c.welcome["type"] != "welcome" {
		t.Fatalf("%s: first frame %s is not a welcome (%v)", addr, b, err)
	}
	go func() {
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.closed <- err
				return
			}
			var f map[string]any
			if err := json.Unmarshal(b, &f); err != nil {
				c.closed <- fmt.Errorf("undecodable frame %q: %w", b, err)
				return
			}
			c.frames <- f
		}
	}()
	c.data, _ = c.welcome["data"].(map[string]any)
	c.user, _ = c.data["user"].(string)
	c.resume, _ = c.data["resume"].(string)
	if c.user == "" {
		t.Fatalf("welcome without user: %v", c.welcome)
	}
	return c
}

func (c *client) send(t *testing.T, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatal(err)
	}
}

// next returns the next frame of type typ, skipping others.
func (c *client) next(t *testing.T, typ string) map[string]any {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case f := <-c.frames:
			if f["type"] == typ {
				return f
			}
		case err := <-c.closed:
			c.closed <- err
			t.Fatalf("%s: closed waiting for %s: %v", c.user, typ, err)
		case <-timeout:
			t.Fatalf("%s: no %s", c.user, typ)
		}
	}
}

// TestDevLogsCalls: dev logs each call's and room's lifecycle at info, one
// line per event, as real clients call and meet.
func TestDevLogsCalls(t *testing.T) {
	d := startDev(t, "--log.level", "info")
	gw := d.gateways[0]
	alice := dial(t, gw, devToken(t, gw, "alice"))
	bob := dial(t, gw, devToken(t, gw, "bob"))

	alice.send(t, `{"type":"invite","id":"1","to":"bob"}`)
	call, _ := alice.next(t, "ack")["call"].(string)
	bob.next(t, "incoming")
	bob.send(t, `{"type":"accept","id":"2","call":"`+call+`"}`)
	alice.next(t, "accepted")
	alice.send(t, `{"type":"hangup","id":"3","call":"`+call+`"}`)
	bob.next(t, "ended")

	alice.send(t, `{"type":"join","id":"4","room":"standup"}`)
	alice.next(t, "joined")
	bob.send(t, `{"type":"join","id":"5","room":"standup"}`)
	bob.next(t, "joined")
	bob.send(t, `{"type":"leave","id":"6","room":"standup"}`)
	alice.next(t, "member_left")

	c := regexp.QuoteMeta(call)
	for _, line := range []string{
		`level=INFO msg="call ringing" call=` + c + ` caller=alice callee=bob\n`,
		`level=INFO msg="call answered" call=` + c + ` caller=alice callee=bob rang=\d[\w.]*\n`,
		`level=INFO msg="call ended" call=` + c + ` caller=alice callee=bob reason=hangup rang=\d[\w.]* talked=\d[\w.]*\n`,
		`level=INFO msg="room created" room=standup\n`,
		`level=INFO msg="room joined" room=standup user=alice conn=\S+\n`,
		`level=INFO msg="room joined" room=standup user=bob conn=\S+\n`,
		`level=INFO msg="room left" room=standup user=bob conn=\S+ reason=left\n`,
	} {
		re := regexp.MustCompile(line)
		natstest.WaitFor(t, "dev logs "+line, func() error {
			if !re.MatchString(d.stderr.String()) {
				return fmt.Errorf("no line matching %s in:\n%s", line, d.stderr.String())
			}
			return nil
		})
	}
}

// TestREADMEWelcome keeps the tour's welcome true: a client of `callmesh
// dev` gets a welcome with the same fields, and the same ICE servers
// (dev's TURN server among them) with the same fields, as README shows.
func TestREADMEWelcome(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```json\n(\\{\"type\":\"welcome\".*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README shows no welcome")
	}
	var shown map[string]any
	if err := json.Unmarshal(block[1], &shown); err != nil {
		t.Fatalf("README's welcome: %v", err)
	}

	d := startDev(t)
	got := dial(t, d.gateways[0], devToken(t, d.gateways[0], "alice")).welcome
	if want, have := shape(shown), shape(got); want != have {
		t.Errorf("README's welcome has the shape\n%s\na dev client's has\n%s\n(%v)", want, have, got)
	}
}

// shape is the structure of a JSON value: object keys sorted, arrays by
// their elements, strings by their scheme-like prefix ("turn:", "stun:").
func shape(v any) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var b strings.Builder
		b.WriteString("{")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s:%s ", k, shape(v[k]))
		}
		return b.String() + "}"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = shape(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case string:
		if scheme, _, ok := strings.Cut(v, ":"); ok && (scheme == "stun" || scheme == "turn" || scheme == "turns") {
			return scheme + ":"
		}
		return "string"
	}
	return fmt.Sprintf("%T", v)
}
