package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callmesh/callmesh/gateway"
)

// TestBrowserRoom: a group call in the demo page's room mode, through its UI
// only, in one Chromium process (one window per user).
//
//   - alice, bob and carol, each on a gateway of their own, join room
//     "standup"; each page shows a tile per member and decodes video from
//     both others (framesDecoded > 0 on the peer connection to each).
//   - dave joins late (on alice's gateway): he sees all three and decodes
//     video from each, and each of them sees and decodes him.
//   - bob mutes his microphone, carol turns her camera off: the others see
//     it on their tiles, and then that they turned them on again.
//   - carol closes her tab: the others get member_left, see a notice that she
//     left, and drop her tile; they keep each other.
//   - alice leaves with the Leave button: bob and dave drop her tile.
//
// While in the room, every page has its controls (mute, camera, share,
// leave) in view and clickable and every tile inside the window; carol's page
// is a 390×844 phone, the others a 1280×800 laptop.
func TestBrowserRoom(t *testing.T) {
	chromium := findChromium(t)
	m := Start(t, Options{Gateways: 3, ResumeGrace: 5 * time.Second, Gateway: demoGateway()})
	s := startBrowser(t, chromium)

	const room = "standup"
	alice := s.open(t, "alice", m.Gateways[0].HTTP.URL+"/", laptop)
	bob := s.open(t, "bob", m.Gateways[1].HTTP.URL+"/", laptop)
	carol := s.open(t, "carol", m.Gateways[2].HTTP.URL+"/", phone)
	first := []*page{alice, bob, carol}
	for _, p := range first {
		p.connect(t, p.name)
		p.joinRoom(t, room)
	}
	for _, p := range first {
		p.waitForRoom(t, "the first three", first)
	}

	dave := s.open(t, "dave", m.Gateways[0].HTTP.URL+"/", laptop)
	dave.connect(t, "dave")
	dave.joinRoom(t, room)
	all := []*page{alice, bob, carol, dave}
	for _, p := range all {
		p.waitForRoom(t, "dave joined late", all)
	}

	// bob mutes his microphone: everyone sees it on his tile, and then that
	// he unmuted.
	bobConn := bob.conn(t)
	for _, muted := range []bool{true, false} {
		bob.toggle(t, "mute", muted)
		for _, p := range []*page{alice, carol, dave} {
			p.waitForTile(t, fmt.Sprintf("bob's tile to show him muted: %v", muted), bobConn,
				fmt.Sprintf(`(getComputedStyle(tile.querySelector(".mic-off")).display !== "none") === %v`, muted))
		}
	}

	// carol turns her camera off: everyone sees "Camera off" on her tile
	// instead of her video; then on again.
	carolConn := carol.conn(t)
	for _, off := range []bool{true, false} {
		carol.toggle(t, "camera", off)
		want := `tile.dataset.video === "camera"`
		if off {
			want = `tile.dataset.video === "none" && tile.querySelector(".tile-text").textContent === "Camera off"`
		}
		for _, p := range []*page{alice, bob, dave} {
			p.waitForTile(t, fmt.Sprintf("carol's tile to show her camera off: %v", off), carolConn, want)
		}
	}
	carol.closeTab(t)
	rest := []*page{alice, bob, dave}
	for _, p := range rest {
		p.waitForGone(t, "carol", carolConn)
		p.waitForRoom(t, "carol closed her tab", rest)
	}

	aliceConn := alice.conn(t)
	alice.click(t, "leave")
	alice.waitFor(t, `body state "idle" and #message[data-reason] = "left"`,
		`document.body.dataset.state === "idle" && document.getElementById("message").dataset.reason === "left"`)
	alice.waitFor(t, "no tiles left", `document.querySelectorAll("#grid .tile").length === 0`)
	last := []*page{bob, dave}
	for _, p := range last {
		p.waitForGone(t, "alice", aliceConn)
		p.waitForRoom(t, "alice left", last)
	}
}

// joinRoom joins room through the page's UI.
func (p *page) joinRoom(t *testing.T, room string) {
	t.Helper()
	p.typeInto(t, "room", room)
	p.click(t, "join")
	p.waitFor(t, "joined room "+room, fmt.Sprintf(
		`document.body.dataset.state === "room" && !!demo.room && demo.room.id === %q && demo.room.state === "joined"`, room))
}

// waitForRoom waits until the page is in its room with exactly the other
// pages of members (after what happened, when): one tile for each, named
// after its user, one for the page's own user, and video frames decoded from
// each. Then it checks the room's layout, and returns the frames decoded from
// each member, as a JSON object by user.
func (p *page) waitForRoom(t *testing.T, when string, members []*page) json.RawMessage {
	t.Helper()
	var want []string
	for _, m := range members {
		if m != p {
			want = append(want, m.name)
		}
	}
	slices.Sort(want)
	list, _ := json.Marshal(want)
	decoded := p.waitFor(t, fmt.Sprintf("(%s) the room with %s: their tiles, video decoded from each", when, strings.Join(want, ", ")),
		fmt.Sprintf(roomJS, p.name, list))
	t.Logf("%s (%s): video frames decoded from each member: %s", p.name, when, decoded)
	p.checkRoomLayout(t, when)
	return decoded
}

// roomJS is waitForRoom's condition, with %q the page's user and %s the JSON
// list of the others' users, sorted. It throws what it finds missing.
const roomJS = `(async (self, want) => {
	const r = demo.room;
	if (document.body.dataset.state !== "room" || !r || r.state !== "joined")
		throw new Error("not in a room: body " + document.body.dataset.state + ", room " + (r && r.state));
	const got = r.members.map(m => m.user).sort();
	if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error("members are " + JSON.stringify(got));
	const tiles = [...document.querySelectorAll("#grid .tile")];
	const name = t => t.querySelector(".tile-name").textContent;
	if (tiles.length !== want.length + 1)
		throw new Error(tiles.length + " tiles: " + JSON.stringify(tiles.map(name)));
	const own = tiles.filter(t => t.dataset.key === "self");
	if (own.length !== 1 || !name(own[0]).includes(self)) throw new Error("no tile of one's own: " + JSON.stringify(tiles.map(name)));
	const decoded = {};
	for (const m of r.members) {
		const tile = tiles.find(t => t.dataset.conn === m.conn);
		if (!tile || name(tile) !== m.user) throw new Error("no tile named " + m.user + " for conn " + m.conn);
		let n = 0;
		(await m.pc.getStats()).forEach(s => {
			if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0;
		});
		if (n === 0)
			throw new Error("no video frames decoded from " + m.user + " (ice " + m.pc.iceConnectionState + ", signaling " + m.pc.signalingState + ")");
		const v = tile.querySelector("video");
		if (tile.dataset.video !== "camera" || !(v.videoWidth > 0))
			throw new Error(m.user + "'s tile shows no video (data-video " + tile.dataset.video + ", videoWidth " + v.videoWidth +
				", tracks " + JSON.stringify(m.stream && m.stream.getTracks().map(t => [t.kind, t.readyState, t.muted ? "muted" : "unmuted"])) +
				", mute " + JSON.stringify(m.mute) + ")");
		decoded[m.user] = n;
	}
	return decoded;
})(%q, %s)`

// waitForGone waits until the member connection conn of user is gone from
// the page: no tile, not among the room's members, and a notice that user
// left.
func (p *page) waitForGone(t *testing.T, user, conn string) {
	t.Helper()
	notices := p.waitFor(t, user+"'s tile dropped and a notice that "+user+" left", fmt.Sprintf(`((user, conn) => {
		const r = demo.room;
		if (!r || r.member(conn)) throw new Error(user + " is still a member");
		if (document.querySelector("#grid .tile[data-conn='" + conn + "']")) throw new Error(user + "'s tile is still there");
		const notices = [...document.querySelectorAll("#notices li")].map(li => li.textContent);
		if (!notices.some(n => n.startsWith(user + " left"))) throw new Error("notices: " + JSON.stringify(notices));
		return notices;
	})(%q, %q)`, user, conn))
	t.Logf("%s: %s is gone; notices: %s", p.name, user, notices)
}

// checkRoomLayout checks what a user sees of the room (when says after what):
// the room's controls inside the window and not covered, every tile inside
// the window and with a size.
func (p *page) checkRoomLayout(t *testing.T, when string) {
	t.Helper()
	p.waitFor(t, "the room's layout ("+when+"): mute, camera, screen, leave in view and clickable, every tile in the window",
		roomLayoutJS)
}

// roomLayoutJS is checkRoomLayout's condition; it throws the problems it finds.
const roomLayoutJS = `(() => {` + viewChecksJS + `
	for (const id of ["mute", "camera", "screen", "leave"]) clickable(id);
	for (const tile of document.querySelectorAll("#grid .tile"))
		inView("the tile of " + tile.querySelector(".tile-name").textContent, tile.getBoundingClientRect());
	if (problems.length) throw new Error(problems.join("; "));
	return true;
})()`

// conn returns the id of the page's connection.
func (p *page) conn(t *testing.T) string {
	t.Helper()
	var conn string
	if err := json.Unmarshal(p.waitFor(t, "the connection's id", `demo.mesh.conn`), &conn); err != nil {
		t.Fatalf("%s: demo.mesh.conn: %v", p.name, err)
	}
	return conn
}

// toggle clicks toggle button #id and waits until it is pressed or not.
func (p *page) toggle(t *testing.T, id string, pressed bool) {
	t.Helper()
	p.click(t, id)
	p.waitFor(t, fmt.Sprintf("#%s pressed: %v", id, pressed), fmt.Sprintf(
		`document.getElementById(%q).getAttribute("aria-pressed") === "%v"`, id, pressed))
}

// waitForTile waits until the tile of member connection conn is there and
// cond, JavaScript about it (named tile), holds.
func (p *page) waitForTile(t *testing.T, what, conn, cond string) {
	t.Helper()
	p.waitFor(t, what, fmt.Sprintf(`(tile => !!tile && %s)(document.querySelector("#grid .tile[data-conn='%s']"))`, cond, conn))
}

// closeTab closes the page's tab, as its user would.
func (p *page) closeTab(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- chromedp.Cancel(p.ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: close the tab: %v", p.name, err)
		}
	case <-ctx.Done():
		t.Fatalf("%s: the tab did not close within %v", p.name, browserWait)
	}
}

// TestBrowserRoomFromCall: a one-to-one call becomes a room when a third
// person is added, through the demo page's UI.
//
//   - alice (gateway 0) calls bob (gateway 1); in the call, alice adds carol
//     (gateway 2). carol's page rings with the room's invitation; she joins.
//   - All three are in the room and decode video from both others; alice's
//     and bob's peer connection to each other is the one of their call (the
//     call moved, its media did not restart).
//   - bob invites dave, who declines: bob sees that dave declined.
func TestBrowserRoomFromCall(t *testing.T) {
	chromium := findChromium(t)
	m := Start(t, Options{Gateways: 3, ResumeGrace: 5 * time.Second, Gateway: demoGateway()})
	s := startBrowser(t, chromium)

	alice := s.open(t, "alice", m.Gateways[0].HTTP.URL+"/", laptop)
	bob := s.open(t, "bob", m.Gateways[1].HTTP.URL+"/", laptop)
	carol := s.open(t, "carol", m.Gateways[2].HTTP.URL+"/", laptop)
	for _, p := range []*page{alice, bob, carol} {
		p.connect(t, p.name)
	}
	establish(t, alice, bob)
	for _, p := range []*page{alice, bob} {
		p.waitFor(t, "the call's peer connection kept aside", `(window.callPC = demo.call.pc, true)`)
	}

	alice.typeInto(t, "invitee", "carol")
	alice.click(t, "invite")
	carol.waitFor(t, `body state "ringing" with the room's invitation`, `document.body.dataset.state === "ringing" &&
		document.getElementById("incoming-from").textContent === "alice" &&
		/invites you to the room/.test(document.getElementById("incoming-what").textContent)`)
	carol.click(t, "answer")
	all := []*page{alice, bob, carol}
	for _, p := range all {
		p.waitForRoom(t, "carol was added to the call", all)
	}
	alice.waitFor(t, "alice's connection to bob to be the call's", `demo.room.members.some(m => m.user === "bob" && m.pc === window.callPC)`)
	bob.waitFor(t, "bob's connection to alice to be the call's", `demo.room.members.some(m => m.user === "alice" && m.pc === window.callPC)`)

	dave := s.open(t, "dave", m.Gateways[0].HTTP.URL+"/", laptop)
	dave.connect(t, "dave")
	bob.typeInto(t, "invitee", "dave")
	bob.click(t, "invite")
	dave.waitFor(t, `body state "ringing"`, `document.body.dataset.state === "ringing"`)
	dave.click(t, "reject")
	dave.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
	bob.waitFor(t, "a notice that dave declined", `[...document.querySelectorAll("#notices li")].some(li => li.textContent === "dave declined")`)
	for _, p := range all {
		p.waitForRoom(t, "dave declined", all)
	}
}

// TestBrowserRoomDrain: a room survives a rolling upgrade. erin and frank
// reach the mesh through a load balancer, both on gateway 0, and are in a
// room with gina (gateway 1); gateway 0 drains. erin's and frank's pages
// resume on gateway 1 with their room (welcome.data.rooms), the same
// members and the same peer connections, and video keeps flowing to all.
func TestBrowserRoomDrain(t *testing.T) {
	chromium := findChromium(t)
	m := Start(t, Options{ResumeGrace: 5 * time.Second, Gateway: demoGateway(func(c *gateway.Config) {
		c.DrainTimeout = 3 * time.Second
	})})
	s := startBrowser(t, chromium)

	lb := newBalancer(t, m)
	erin := s.open(t, "erin", lb.URL+"/", phone)
	frank := s.open(t, "frank", lb.URL+"/", laptop)
	gina := s.open(t, "gina", m.Gateways[1].HTTP.URL+"/", laptop)
	all := []*page{erin, frank, gina}
	for _, p := range all {
		p.connect(t, p.name)
		p.joinRoom(t, "retro")
	}
	frames := map[*page]json.RawMessage{}
	for _, p := range all {
		frames[p] = p.waitForRoom(t, "before the drain", all)
		p.waitFor(t, "the peer connections kept aside", `(window.roomPCs = demo.room.members.map(m => m.pc), true)`)
	}
	conns := [2]string{erin.conn(t), frank.conn(t)}

	lb.drain(0)
	stopped := shutdownInBackground(m.Gateways[0])
	for i, p := range []*page{erin, frank} {
		p.waitFor(t, "the session resumed on another gateway, still in the room", fmt.Sprintf(
			`demo.mesh.state === "open" && demo.mesh.welcome.resumed && demo.mesh.welcome.conn === %q &&
			demo.mesh.welcome.rooms.some(r => r.room === "retro") && demo.room && demo.room.state === "joined"`, conns[i]))
	}
	if err := <-stopped; err != nil {
		t.Fatalf("drain: %v", err)
	}
	for _, p := range all {
		p.waitForRoom(t, "after the drain", all)
		p.waitFor(t, "the same peer connections", `demo.room.members.every((m, i) => m.pc === window.roomPCs[i])`)
		p.waitFor(t, "more video frames decoded from each after the drain", fmt.Sprintf(roomFramesAboveJS, frames[p]))
	}
}

// roomFramesAboveJS is true once the room's page has decoded more video
// frames from every member than %s, a JSON object of frames by user.
const roomFramesAboveJS = `(async before => {
	for (const m of demo.room.members) {
		let n = 0;
		(await m.pc.getStats()).forEach(s => {
			if (s.type === "inbound-rtp" && s.kind === "video") n += s.framesDecoded || 0;
		});
		if (!(n > (before[m.user] || 0))) throw new Error(m.user + ": " + n + " frames, " + before[m.user] + " before");
	}
	return true;
})(%s)`

// TestBrowserRoomLostSignal: a pair whose signals died with a gateway is
// mended after the resume. Room signal is not replayed across a gateway's
// crash (PROTOCOL.md §14.11), so the client restarts what broke. ivan (on
// gateway 0, through a load balancer) joins hana's room (gateway 1), and his
// room signals are dropped in his page, as if his gateway had died with
// them: his offer to hana never arrives. Gateway 0 then crashes and ivan's
// socket dies with it; his page resumes on gateway 1 with the room, offers
// again over the same peer connection, and both decode each other's video.
func TestBrowserRoomLostSignal(t *testing.T) {
	chromium := findChromium(t)
	m := Start(t, Options{ResumeGrace: 5 * time.Second, Gateway: demoGateway()})
	s := startBrowser(t, chromium)

	lb := newBalancer(t, m)
	hana := s.open(t, "hana", m.Gateways[1].HTTP.URL+"/", laptop)
	ivan := s.open(t, "ivan", lb.URL+"/", laptop)
	ivan.waitFor(t, "ivan's page to keep its sockets and to drop his room signals", `(() => {
		window.sockets = [];
		window.WebSocket = class extends WebSocket {
			constructor(...args) {
				super(...args);
				sockets.push(this);
			}
		};
		const send = WebSocket.prototype.send;
		window.dropped = 0;
		window.dropRoomSignals = true;
		WebSocket.prototype.send = function (text) {
			const f = JSON.parse(text);
			if (window.dropRoomSignals && f.type === "signal" && f.room !== undefined) {
				window.dropped++;
				return;
			}
			return send.call(this, text);
		};
		return true;
	})()`)
	hana.connect(t, "hana")
	ivan.connect(t, "ivan")
	hana.joinRoom(t, "lost")
	ivan.joinRoom(t, "lost")
	ivan.waitFor(t, "ivan's offer to hana lost", `window.dropped > 0 && demo.room.members.length === 1 &&
		demo.room.members[0].pc.signalingState === "have-local-offer" && (window.pcBefore = demo.room.members[0].pc, true)`)
	hana.waitFor(t, "ivan a member, with nothing from him", `!!demo.room && demo.room.members.length === 1 &&
		demo.room.members[0].user === "ivan" && !demo.room.members[0].pc.remoteDescription`)
	conn := ivan.conn(t)

	ivan.waitFor(t, "ivan's room signals to flow again", `(window.dropRoomSignals = false, true)`)
	lb.drain(0)
	m.Gateways[0].Crash()
	ivan.waitFor(t, "ivan's socket to die with his gateway", `(sockets.at(-1).close(4000, "the gateway died"), true)`)
	ivan.waitFor(t, "ivan's session resumed on gateway 1, still in the room", fmt.Sprintf(
		`demo.mesh.state === "open" && demo.mesh.welcome.resumed && demo.mesh.conn === %q &&
		demo.mesh.welcome.rooms.some(r => r.room === "lost") && demo.room && demo.room.state === "joined"`, conn))
	both := []*page{hana, ivan}
	for _, p := range both {
		p.waitForRoom(t, "after ivan's gateway died", both)
	}
	ivan.waitFor(t, "the same peer connection, mended", `demo.room.members[0].pc === window.pcBefore`)
}
