package meshtest

// The browser end-to-end test: real Chromium tabs drive the demo page
// (gateway/web) through its UI only, against a real in-process mesh. The DOM
// ids, body[data-state], #message[data-reason] and window.demo are the
// contract between the demo page and this test.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callmesh/callmesh/gateway"
)

// browserWait bounds every wait on a page. It is a deadline for failing, never
// a timing being asserted.
const browserWait = 30 * time.Second

// pollEvery is how often a wait re-evaluates its JavaScript condition.
const pollEvery = 100 * time.Millisecond

// noChromium is what a run without a browser says, loudly.
const noChromium = "SKIPPED: no Chromium found — install chromium (apt-get install -y chromium); CI installs it"

// TestBrowser runs two phases in one Chromium process (one tab per user, each
// in its own window so that every page is visible and gets frames):
//
//   - Call: alice (gateway 0) calls bob (gateway 1); both pages reach ICE
//     connected and decode the other's video; alice hangs up.
//   - Busy: alice and bob are in a call again; carol calls bob and gets busy;
//     alice's and bob's call carries on; bob hangs up.
//   - Drain: dave and erin reach the mesh through a load balancer, both on
//     gateway 0, and are in a call; gateway 0 drains (a rolling upgrade);
//     both pages resume on gateway 1 and their call carries on.
//
// Every call is set up by establish, which also checks what a user sees
// while it rings and once it is up: the call controls in view and not
// covered, and the local preview small beside the remote video. Pages are
// 1280×800 (a laptop); dave's and erin's are 390×844 (a phone).
func TestBrowser(t *testing.T) {
	chromium := findChromium(t)

	m := Start(t, Options{ResumeGrace: 5 * time.Second, Gateway: demoGateway(func(c *gateway.Config) {
		c.DrainTimeout = 3 * time.Second
	})})
	s := startBrowser(t, chromium)

	alice := s.open(t, "alice", m.Gateways[0].HTTP.URL+"/", laptop)
	bob := s.open(t, "bob", m.Gateways[1].HTTP.URL+"/", laptop)
	alice.connect(t, "alice")
	bob.connect(t, "bob")

	if !t.Run("Call", func(t *testing.T) {
		t.Cleanup(func() { s.dumpIfFailed(t) })
		call := establish(t, alice, bob)
		t.Logf("call %s established", call)

		alice.click(t, "hangup")
		bob.waitFor(t, `#message[data-reason] = "hangup"`, `document.getElementById("message").dataset.reason === "hangup"`)
		bob.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
		alice.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
	}) {
		t.Log("Busy is not run: Call failed, so alice's and bob's pages are in an unknown state")
		return
	}

	if !t.Run("Busy", func(t *testing.T) {
		t.Cleanup(func() { s.dumpIfFailed(t) })
		carol := s.open(t, "carol", m.Gateways[1].HTTP.URL+"/", laptop)
		carol.connect(t, "carol")

		call := establish(t, alice, bob)
		aliceFrames, bobFrames := alice.framesDecoded(t), bob.framesDecoded(t)

		carol.typeInto(t, "callee", "bob")
		carol.click(t, "call")
		carol.waitFor(t, `#message[data-reason] = "busy"`, `document.getElementById("message").dataset.reason === "busy"`)
		carol.waitFor(t, `#message to mention busy`, `/busy/i.test(document.getElementById("message").textContent)`)
		carol.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)

		// The call carol could not join is untouched: same call, still active,
		// still connected, and the video still flows both ways.
		for _, p := range []*page{alice, bob} {
			p.waitFor(t, "the same call "+call+" to be still active and connected", fmt.Sprintf(
				`document.body.dataset.state === "active" && demo.call && demo.call.id === %q && %s`, call, iceConnected))
		}
		alice.waitFor(t, "more video frames decoded after carol's call", framesAbove(aliceFrames))
		bob.waitFor(t, "more video frames decoded after carol's call", framesAbove(bobFrames))

		bob.click(t, "hangup")
		alice.waitFor(t, `#message[data-reason] = "hangup"`, `document.getElementById("message").dataset.reason === "hangup"`)
		alice.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
		bob.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
	}) {
		return
	}

	t.Run("Drain", func(t *testing.T) {
		t.Cleanup(func() { s.dumpIfFailed(t) })
		lb := newBalancer(t, m)
		dave := s.open(t, "dave", lb.URL+"/", phone)
		erin := s.open(t, "erin", lb.URL+"/", phone)
		dave.connect(t, "dave")
		erin.connect(t, "erin")
		call := establish(t, dave, erin)
		var conns [2]string
		for i, p := range []*page{dave, erin} {
			_ = json.Unmarshal(p.waitFor(t, "the session's conn", `demo.mesh.welcome.conn`), &conns[i])
		}
		daveFrames, erinFrames := dave.framesDecoded(t), erin.framesDecoded(t)

		lb.drain(0)
		stopped := shutdownInBackground(m.Gateways[0])
		for i, p := range []*page{dave, erin} {
			p.waitFor(t, "the session resumed on another gateway", fmt.Sprintf(
				`demo.mesh.state === "open" && demo.mesh.welcome.resumed && demo.mesh.welcome.conn === %q`, conns[i]))
			p.waitFor(t, "the same call "+call+" to be still active and connected", fmt.Sprintf(
				`document.body.dataset.state === "active" && demo.call && demo.call.id === %q && %s`, call, iceConnected))
		}
		if err := <-stopped; err != nil {
			t.Fatalf("drain: %v", err)
		}
		dave.waitFor(t, "more video frames decoded after the drain", framesAbove(daveFrames))
		erin.waitFor(t, "more video frames decoded after the drain", framesAbove(erinFrames))

		dave.click(t, "hangup") // through gateway 1 now
		erin.waitFor(t, `#message[data-reason] = "hangup"`, `document.getElementById("message").dataset.reason === "hangup"`)
		erin.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
		dave.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
	})
}

// balancer is a load balancer in front of the mesh's gateways: it sends
// every request to the first gateway not taken out of rotation, as a load
// balancer does once a draining gateway's /healthz fails.
type balancer struct {
	*httptest.Server
	out []atomic.Bool
}

func newBalancer(t *testing.T, m *Mesh) *balancer {
	b := &balancer{out: make([]atomic.Bool, len(m.Gateways))}
	proxy := &httputil.ReverseProxy{Director: func(r *http.Request) {
		// r.Host stays the balancer's: the page's origin, as the gateway's
		// same-origin check expects behind a balancer.
		for i, g := range m.Gateways {
			if !b.out[i].Load() {
				target, _ := url.Parse(g.HTTP.URL)
				r.URL.Scheme, r.URL.Host = target.Scheme, target.Host
				return
			}
		}
	}}
	b.Server = httptest.NewServer(proxy)
	t.Cleanup(b.Close)
	return b
}

// drain takes gateway i out of rotation.
func (b *balancer) drain(i int) { b.out[i].Store(true) }

// shutdownInBackground drains g (a rolling upgrade's step) while the test
// goes on, and sends the result of its Shutdown.
func shutdownInBackground(g *Gateway) <-chan error {
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), browserWait)
		defer cancel()
		stopped <- g.Server.Shutdown(ctx)
	}()
	return stopped
}

// iceConnected is true once the current call's peer connection is connected.
const iceConnected = `!!demo.call.pc && ["connected", "completed"].includes(demo.call.pc.iceConnectionState)`

// framesDecodedJS is the video frames the current call has decoded, summed over
// its inbound video streams.
const framesDecodedJS = `(async () => {
	let n = 0;
	(await demo.call.pc.getStats()).forEach(s => {
		if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0;
	});
	return n;
})()`

// framesAbove is a condition: more than n video frames decoded.
func framesAbove(n int) string {
	return fmt.Sprintf(`(async () => { const n = await %s; return n > %d ? n : 0; })()`, framesDecodedJS, n)
}

// establish has caller call callee through the UI and callee answer, waits
// until both pages are connected and decode video, and returns the call id.
func establish(t *testing.T, caller, callee *page) string {
	t.Helper()
	caller.typeInto(t, "callee", callee.name)
	caller.click(t, "call")
	callee.waitFor(t, `body state "ringing"`, `document.body.dataset.state === "ringing"`)
	caller.checkCallLayout(t, "while it rings", "hangup", "camera", "screen")
	callee.checkCallLayout(t, "while it rings", "answer", "reject", "hangup", "camera", "screen")
	callee.click(t, "answer")
	for _, p := range []*page{caller, callee} {
		p.waitFor(t, `body state "active"`, `document.body.dataset.state === "active"`)
		p.waitFor(t, "ICE connected/completed", `!!demo.call && `+iceConnected)
		p.waitFor(t, "remote video frames decoded", framesAbove(0))
		p.checkCallLayout(t, "in the call", "hangup", "camera", "screen")
	}
	var ids [2]string
	for i, p := range []*page{caller, callee} {
		if err := json.Unmarshal(p.waitFor(t, "the call's id", `demo.call && demo.call.id`), &ids[i]); err != nil {
			t.Fatalf("%s: demo.call.id: %v", p.name, err)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("%s's call is %q, %s's is %q", caller.name, ids[0], callee.name, ids[1])
	}
	return ids[0]
}

// findChromium returns the browser to drive: $CHROMIUM, /usr/bin/chromium, or
// chromium, chromium-browser or google-chrome in PATH. Without one it skips,
// loudly, except under CI=true, where it fails: CI must always run the test.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("$CHROMIUM=%q is not an executable: %v", p, err)
		}
		return p
	}
	if _, err := exec.LookPath("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and no Chromium found ($CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome): CI must run the browser test")
	}
	fmt.Fprintf(os.Stderr, "\n*** %s: %s ***\n\n", t.Name(), noChromium)
	t.Skip(noChromium)
	return ""
}

// session is one Chromium process and its pages.
type session struct {
	root    context.Context // the browser's first tab; its cancel closes the browser
	dataDir string
	out     *syncBuffer // Chromium's stdout and stderr
	pages   []*page
	dumped  bool // a failure has been dumped already
}

// startBrowser starts Chromium for the duration of t, and makes sure that no
// process of it outlives the test. Should t fail, its pages are dumped
// (dumpIfFailed) before the browser closes.
func startBrowser(t *testing.T, chromium string) *session {
	t.Helper()
	s := &session{dataDir: t.TempDir(), out: &syncBuffer{max: 64 << 10}}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(s.dataDir),
		chromedp.CombinedOutput(s.out),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.WindowSize(laptop.width, laptop.height),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		// Replaces the defaults' list, so it repeats them.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	s.root = root
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(root, 10*time.Second)
		defer cancel()
		_ = chromedp.Cancel(ctx) // closes the browser gracefully
		cancelRoot()
		cancelAlloc() // kills what is left and waits for the process
		s.reapLeftovers(t)
	})

	// The first Run starts the browser and binds it to root, so it cannot
	// have a timeout of its own: a watchdog bounds it instead.
	started := time.Now()
	watchdog := time.AfterFunc(browserWait, cancelRoot)
	err := chromedp.Do(root)
	if !watchdog.Stop() {
		err = fmt.Errorf("not started within %v: %w", browserWait, err)
	}
	if err != nil {
		t.Fatalf("start %s: %v\nits output:\n%s", chromium, err, s.out)
	}
	version, _ := chromedp.Run(root, chromedp.Evaluate[string](`navigator.userAgent`))
	t.Logf("browser started in %v: %s", time.Since(started).Round(time.Millisecond), version)
	t.Cleanup(func() { s.dumpIfFailed(t) }) // before the browser closes
	return s
}

// reapLeftovers fails the test if any process of this browser outlives it,
// and kills those (they are the test's own children, found by their unique
// --user-data-dir).
func (s *session) reapLeftovers(t *testing.T) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesUsing(s.dataDir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("Chromium processes still running after the browser closed: %v; killing them", pids)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesUsing lists the processes started with --user-data-dir=dir (Linux
// only; elsewhere it finds none).
func processesUsing(dir string) []int {
	want := []byte("--user-data-dir=" + dir)
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
			if bytes.Equal(arg, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// page is one tab, in a window of its own.
type page struct {
	name string
	ctx  context.Context

	mu      sync.Mutex
	console []string
}

// viewport is the size of a page's window, in CSS pixels.
type viewport struct{ width, height int }

// The windows the pages are tried in: a laptop's browser window and a phone.
var (
	laptop = viewport{1280, 800}
	phone  = viewport{390, 844}
)

// open opens a tab for user at url, in a window of size vp. The tab lives as
// long as the whole test (not t, which may be a subtest), so that a failure
// can still be dumped.
func (s *session) open(t *testing.T, name, url string, vp viewport) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(s.root)
	p := &page{name: name, ctx: ctx}
	s.pages = append(s.pages, p)
	watchdog := time.AfterFunc(browserWait, cancel)
	err := chromedp.Do(ctx) // creates the tab
	if !watchdog.Stop() {
		err = fmt.Errorf("no tab within %v: %w", browserWait, err)
	}
	if err != nil {
		cancel()
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	// Close the tab when the test's browser closes: before that, on a failure
	// of any phase, it is dumped.
	context.AfterFunc(s.root, cancel)

	messages := chromedp.Console(ctx)
	go func() {
		for msg, err := range messages {
			if err != nil {
				return
			}
			line := fmt.Sprintf("%s %s", msg.Time.Format("15:04:05.000"), msg)
			if msg.URL != "" {
				line += fmt.Sprintf(" (%s:%d)", msg.URL, msg.Line+1)
			}
			p.mu.Lock()
			p.console = append(p.console, line)
			p.mu.Unlock()
		}
	}()

	p.do(t, fmt.Sprintf("load %s in %d×%d", url, vp.width, vp.height),
		chromedp.EmulateViewport(int64(vp.width), int64(vp.height)), chromedp.Navigate(url))
	p.waitFor(t, "the demo page to load", `document.readyState === "complete" && !!document.getElementById("connect")`)
	p.waitFor(t, fmt.Sprintf("a %d×%d window", vp.width, vp.height), fmt.Sprintf(
		`innerWidth === %d && innerHeight === %d`, vp.width, vp.height))
	return p
}

// connect logs in as user through the page's UI.
func (p *page) connect(t *testing.T, user string) {
	t.Helper()
	p.waitFor(t, "the note that sign-in by name is for local use only", `(n => n.getClientRects().length > 0 &&
		/For local use only/.test(n.textContent))(document.getElementById("dev-signin-note"))`)
	p.typeInto(t, "user", user)
	p.click(t, "connect")
	p.waitFor(t, fmt.Sprintf("#status to contain %q", "connected as "+user), fmt.Sprintf(
		`document.getElementById("status").textContent.includes(%q)`, "connected as "+user))
}

// typeInto replaces the text of input #id by typing text.
func (p *page) typeInto(t *testing.T, id, text string) {
	t.Helper()
	p.waitFor(t, "#"+id+" to be enabled and visible", usable(id))
	// Empty the field as a user would select its text and delete it.
	// (chromedp.SetValue cannot set "": it sends no argument for it.)
	p.do(t, "type "+strconv.Quote(text)+" into #"+id,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).value = ""`, id)),
		chromedp.SendKeys(chromedp.ID(id), text))
	p.waitFor(t, fmt.Sprintf("#%s to hold %q", id, text), fmt.Sprintf(`document.getElementById(%q).value === %q`, id, text))
}

// click clicks button #id once it is enabled and visible.
func (p *page) click(t *testing.T, id string) {
	t.Helper()
	p.waitFor(t, "#"+id+" to be enabled and visible", usable(id))
	p.do(t, "click #"+id, chromedp.Click(chromedp.ID(id)))
}

// checkCallLayout checks what a user of the page sees of a call (when says
// when): each button ids is inside the window and nothing covers its centre,
// so it needs no scrolling to find and a click reaches it; and the local
// preview is in the window and at most a quarter the size of the remote video.
func (p *page) checkCallLayout(t *testing.T, when string, ids ...string) {
	t.Helper()
	list, _ := json.Marshal(ids)
	p.waitFor(t, "the call's layout "+when+": "+strings.Join(ids, ", ")+" in view and clickable, the local preview small",
		fmt.Sprintf(callLayoutJS, list))
}

// callLayoutJS is checkCallLayout's condition, with %s the JSON list of button
// ids. It throws the problems it finds, so that waitFor reports them.
const callLayoutJS = `(ids => {` + viewChecksJS + `
	for (const id of ids) clickable(id);
	const local = document.getElementById("local").getBoundingClientRect();
	const remote = document.getElementById("remote").getBoundingClientRect();
	inView("the local preview #local", local);
	if (local.width * local.height * 4 > remote.width * remote.height)
		problems.push("the local preview " + where(local) + " is not at most a quarter of the remote video " + where(remote));
	if (problems.length) throw new Error(problems.join("; "));
	return true;
})(%s)`

// viewChecksJS starts a layout condition: it defines problems (what is
// wrong), inView(what, rect) (the rectangle has a size and is inside the
// window) and clickable(id) (button #id is in view and nothing covers its
// centre, so it needs no scrolling to find and a click reaches it).
const viewChecksJS = `
	const problems = [];
	const vw = innerWidth, vh = innerHeight;
	const where = r => "[" + [r.left, r.top, r.right, r.bottom].map(Math.round) + "]";
	const inView = (what, r) => {
		if (r.width <= 0 || r.height <= 0) problems.push(what + " has no size");
		else if (r.left < 0 || r.top < 0 || r.right > vw || r.bottom > vh)
			problems.push(what + " at " + where(r) + " is not inside the " + vw + "×" + vh + " window");
	};
	const clickable = id => {
		const el = document.getElementById(id);
		if (!el) { problems.push("no #" + id); return; }
		const r = el.getBoundingClientRect();
		inView("#" + id, r);
		const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
		if (hit !== el && !el.contains(hit))
			problems.push("#" + id + " is covered at its centre by " + (hit ? hit.outerHTML.slice(0, 80) : "nothing"));
	};`

// demoGateway is the gateway config of the browser tests: the demo page and
// dev tokens, no ICE servers (no network here: host candidates only), then
// more.
func demoGateway(more ...func(*gateway.Config)) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Demo = true
		c.DevTokens = &gateway.MintConfig{Alg: "HS256", Secret: Secret}
		c.ICEServers = nil
		for _, f := range more {
			f(c)
		}
	}
}

// usable is true when element #id is there, enabled and visible.
func usable(id string) string {
	return fmt.Sprintf(`(el => !!el && !el.disabled && el.getClientRects().length > 0 &&
		getComputedStyle(el).visibility !== "hidden")(document.getElementById(%q))`, id)
}

// framesDecoded returns how many video frames the current call has decoded.
func (p *page) framesDecoded(t *testing.T) int {
	t.Helper()
	var n int
	if err := json.Unmarshal(p.waitFor(t, "remote video frames decoded", framesAbove(0)), &n); err != nil {
		t.Fatalf("%s: framesDecoded: %v", p.name, err)
	}
	return n
}

// do runs steps on the page within browserWait.
func (p *page) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %s: %v\npage: %s", p.name, what, err, p.state())
	}
}

// pollResult is what the wrapper of a waitFor condition returns.
type pollResult struct {
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Err   string          `json:"err"`
}

// waitFor evaluates the JavaScript expression cond (it may be a promise) until
// it is truthy, and returns its value as JSON. After browserWait it fails the
// test with what it waited for, the last result and the page's state. An
// exception in cond counts as false.
func (p *page) waitFor(t *testing.T, what, cond string) json.RawMessage {
	t.Helper()
	js := `(async () => {
		try {
			const v = await (` + cond + `);
			return {ok: !!v, value: v === undefined ? null : v};
		} catch (e) {
			return {ok: false, err: String(e)};
		}
	})()`
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	last := "nothing evaluated yet"
	for {
		r, err := chromedp.Run(ctx, chromedp.Evaluate[pollResult](js, chromedp.EvalAwaitPromise))
		switch {
		case err != nil:
			last = "error: " + err.Error()
		case r.OK:
			return r.Value
		case r.Err != "":
			last = "exception: " + r.Err
		default:
			last = "value: " + string(r.Value)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: gave up after %v waiting for %s\n  condition: %s\n  last: %s\n  page: %s",
				p.name, browserWait, what, cond, last, p.state())
		case <-time.After(pollEvery):
		}
	}
}

// stateJS describes the page for a failure message.
const stateJS = `(() => {
	const $ = id => document.getElementById(id);
	const text = id => $(id) ? $(id).textContent.trim() : "(no #" + id + ")";
	const s = {
		url: location.href,
		state: document.body ? document.body.dataset.state : null,
		status: text("status"),
		message: text("message"),
		reason: $("message") ? $("message").getAttribute("data-reason") : null,
	};
	try {
		const d = window.demo;
		s.demo = d === undefined ? "undefined" : d === null ? "null" : "set";
		if (d && d.mesh) s.user = d.mesh.user;
		const c = d && d.call;
		if (c) {
			s.call = {id: c.id, peer: c.peer, role: c.role, state: c.state, reason: c.reason};
			if (c.pc) Object.assign(s.call, {ice: c.pc.iceConnectionState, pc: c.pc.connectionState, signaling: c.pc.signalingState});
		}
	} catch (e) {
		s.error = String(e);
	}
	const v = $("remote");
	if (v) s.remote = {width: v.videoWidth, height: v.videoHeight, readyState: v.readyState, paused: v.paused};
	return JSON.stringify(s);
})()`

// state is the page's current state, or why it could not be read.
func (p *page) state() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](stateJS))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// dumpIfFailed, once t has failed, saves a screenshot of every page to a
// directory that outlives the test, and logs each page's state and console,
// and the browser's output. It dumps only the first failure.
func (s *session) dumpIfFailed(t *testing.T) {
	if !t.Failed() || s.dumped {
		return
	}
	s.dumped = true
	dir, err := os.MkdirTemp("", "callmesh-browser-")
	if err != nil {
		t.Logf("no screenshots: %v", err)
	}
	for _, p := range s.pages {
		var b strings.Builder
		fmt.Fprintf(&b, "=== %s\n  state: %s\n", p.name, p.state())
		if dir != "" {
			ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			cancel()
			file := filepath.Join(dir, p.name+".png")
			if err == nil {
				err = os.WriteFile(file, png, 0o644)
			}
			if err != nil {
				fmt.Fprintf(&b, "  screenshot: failed: %v\n", err)
			} else {
				fmt.Fprintf(&b, "  screenshot: %s\n", file)
			}
		}
		p.mu.Lock()
		fmt.Fprintf(&b, "  console (%d messages):\n", len(p.console))
		for _, line := range p.console {
			fmt.Fprintf(&b, "    %s\n", line)
		}
		p.mu.Unlock()
		t.Log(b.String())
	}
	t.Logf("=== browser output (last %d bytes, without D-Bus and ALSA noise):\n%s", s.out.max, withoutNoise(s.out.String()))
}

// withoutNoise drops the lines of Chromium's output that every run in a
// container has: it finds no D-Bus and no sound card.
func withoutNoise(out string) string {
	var b strings.Builder
	for line := range strings.Lines(out) {
		if !strings.Contains(line, "dbus/") && !strings.Contains(line, "ALSA lib ") && !strings.Contains(line, "/alsa_util.cc") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// syncBuffer keeps the last max bytes written to it, safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
