package meshtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// TestPionPeersThroughMesh runs two real WebRTC stacks (pion) as alice on
// gateway 0 and bob on gateway 1. Everything they need to reach each other
// (offer, answer, trickled candidates) travels only as signal messages
// relayed by the mesh, in the shapes a browser uses: {"description":
// RTCSessionDescription} and {"candidate": RTCIceCandidateInit}. Then they
// talk over a data channel, and alice hangs up.
//
// The test goroutine drives everything: it is the only reader of both
// clients, and pion's callbacks only post events to a channel it selects on.
// Every signal a peer receives must be byte-identical to the next one its
// counterpart sent, and the candidate pair ICE selects must use addresses
// learnt through the mesh, so a relay that corrupted an SDP or a candidate
// fails the test (the DTLS fingerprint and ICE credentials in the SDP make
// the connection itself fail too).
func TestPionPeersThroughMesh(t *testing.T) {
	// The default config hands out a public STUN server, unreachable here.
	m := Start(t, Options{Gateway: func(c *gateway.Config) { c.ICEServers = nil }})
	pionCall(t, m, false)
}

// TestPionPeersThroughTURN is TestPionPeersThroughMesh with the built-in
// TURN server handed out in welcome and ice.transport_policy relay: the two
// peers, on two gateways, connect through TURN relays only (with the
// credentials from their welcome) and the pair ICE selects is relay on
// both sides.
func TestPionPeersThroughTURN(t *testing.T) {
	srv, relayOnly := startRelayTURN(t)
	m := Start(t, Options{Gateway: relayOnly})
	pionCall(t, m, true)
	if srv.Allocations() < 2 {
		t.Errorf("%d TURN allocations, want one per peer at least", srv.Allocations())
	}
}

// pionCall has alice on gateway 0 call bob on gateway 1 with pion peers (see
// TestPionPeersThroughMesh); relay: through TURN only.
func pionCall(t *testing.T, m *Mesh, relay bool) {
	aliceC, bobC := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(aliceC, bobC)

	events := make(chan pionEvent, 256)
	done := make(chan struct{})
	alice := newPionPeer(t, "alice", aliceC, call, true, relay, events, done)
	bob := newPionPeer(t, "bob", bobC, call, false, relay, events, done)
	alice.other, bob.other = bob, alice
	// Registered after the peers' own cleanups, so it runs before them: pion's
	// callbacks during Close must not wait for a reader that has gone.
	t.Cleanup(func() { close(done) })

	// Alice is the caller: she makes the offer once she has accepted, with
	// the data channel in it.
	dc, err := alice.pc.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatalf("alice: create data channel: %v", err)
	}
	alice.watchChannel(dc)
	offer, err := alice.pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("alice: create offer: %v", err)
	}
	if strings.Contains(offer.SDP, "a=candidate:") {
		t.Fatalf("alice's offer already carries candidates; trickle would go untested:\n%s", offer.SDP)
	}
	alice.setLocal(offer)
	alice.signal(pionSignal{Description: &offer})

	sentHello, sentReply := false, false
	for !alice.finished() || !bob.finished() {
		select {
		case e := <-alice.c.frames:
			alice.frame(e)
		case e := <-bob.c.frames:
			bob.frame(e)
		case <-alice.c.closed:
			alice.lost()
		case <-bob.c.closed:
			bob.lost()
		case ev := <-events:
			ev.peer.event(ev)
		case <-time.After(Wait):
			t.Fatalf("nothing happened within %v; awaiting %s; %s", Wait, alice.awaiting(), bob.awaiting())
		}
		if !sentHello && alice.open && alice.iceConnected && bob.iceConnected {
			if err := alice.dc.SendText("hello bob"); err != nil {
				t.Fatalf("alice: send: %v", err)
			}
			sentHello = true
		}
		if !sentReply && bob.open && bob.got != nil {
			if err := bob.dc.SendText("hello alice"); err != nil {
				t.Fatalf("bob: send: %v", err)
			}
			sentReply = true
		}
	}

	for _, p := range []*pionPeer{alice, bob} {
		p.checkSelectedPair(relay)
	}
	// Every signal and ack has been accounted for: nothing else is on its way.
	m.Barrier(aliceC)
	m.Barrier(bobC)

	aliceC.Do(messages.TypeHangup, call)
	bobC.ExpectEnded(call, messages.ReasonHangup)
	m.Barrier(aliceC)
}

// pionSignal is the data of a signal: exactly one of its fields is set, as a
// browser would send description.toJSON() or candidate.toJSON().
type pionSignal struct {
	Description *webrtc.SessionDescription `json:"description,omitempty"`
	Candidate   *webrtc.ICECandidateInit   `json:"candidate,omitempty"`
}

// pionEvent is a pion callback, posted to the test goroutine.
type pionEvent struct {
	peer      *pionPeer
	kind      string                     // see pionPeer.event
	candidate *webrtc.ICECandidate       // candidate; nil when gathering is complete
	ice       webrtc.ICEConnectionState  // ice
	state     webrtc.PeerConnectionState // state
	dc        *webrtc.DataChannel        // channel
	msg       *webrtc.DataChannelMessage // message
}

// pionPeer is one party: its mesh client and its PeerConnection. All fields
// but those set in newPionPeer belong to the test goroutine.
type pionPeer struct {
	t       *testing.T
	name    string
	c       *Client
	pc      *webrtc.PeerConnection
	call    string
	offerer bool
	other   *pionPeer
	events  chan<- pionEvent
	done    <-chan struct{}

	seq         int
	acks        map[string]bool // ids of this peer's signals not yet acked
	inbound     [][]byte        // data the other peer sent, not yet received here, in order
	localUfrag  string
	remoteUfrag string
	pending     []webrtc.ICECandidateInit // remote candidates that came before the remote description
	buffered    int                       // how many were ever pending
	relayed     map[string]bool           // address:port of every candidate received through the mesh

	dc                      *webrtc.DataChannel
	iceConnected, connected bool
	gathered, open          bool
	got                     *webrtc.DataChannelMessage
}

// pionSettings is what two pion peers need on a machine with nothing but
// loopback: loopback host candidates (pion skips loopback by default), only
// UDP over IPv4 on 127.0.0.1 (no other interface or network to depend on),
// and no mDNS (no multicast to rely on; candidates carry plain addresses).
func pionSettings() webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

func newPionPeer(t *testing.T, name string, c *Client, call string, offerer, relay bool, events chan<- pionEvent, done <-chan struct{}) *pionPeer {
	t.Helper()
	// Without relay the mesh was told to hand out no ICE servers, so this
	// is empty; a loopback connection needs none. With relay, the welcome
	// names the TURN server with this user's credentials, and the policy.
	w := c.Welcome
	switch {
	case !relay && len(w.ICEServers) != 0:
		t.Fatalf("%s: welcome has ice servers %+v; the mesh was configured with none", name, w.ICEServers)
	case relay && (len(w.ICEServers) != 1 || !strings.HasSuffix(w.ICEServers[0].Username, ":"+c.User) || w.ICETransportPolicy != "relay"):
		t.Fatalf("%s: welcome has ice servers %+v, policy %q; want the TURN server with credentials for %s, policy relay", name, w.ICEServers, w.ICETransportPolicy, c.User)
	}
	cfg := webrtc.Configuration{ICEServers: pionICEServers(w.ICEServers)}
	if w.ICETransportPolicy == "relay" {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(pionSettings())).NewPeerConnection(cfg)
	if err != nil {
		t.Fatalf("%s: new peer connection: %v", name, err)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Errorf("%s: close peer connection: %v", name, err)
		}
	})
	p := &pionPeer{
		t: t, name: name, c: c, pc: pc, call: call, offerer: offerer, events: events, done: done,
		acks: map[string]bool{}, relayed: map[string]bool{},
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) { p.emit(pionEvent{kind: "candidate", candidate: cand}) })
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) { p.emit(pionEvent{kind: "ice", ice: s}) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) { p.emit(pionEvent{kind: "state", state: s}) })
	pc.OnDataChannel(func(dc *webrtc.DataChannel) { p.emit(pionEvent{kind: "channel", dc: dc}) })
	return p
}

// pionICEServers converts welcome.data.ice_servers to pion's configuration.
func pionICEServers(in []messages.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		srv := webrtc.ICEServer{URLs: s.URLs, Username: s.Username}
		if s.Credential != "" {
			srv.Credential, srv.CredentialType = s.Credential, webrtc.ICECredentialTypePassword
		}
		out = append(out, srv)
	}
	return out
}

// emit posts a pion callback to the test goroutine; it runs on pion's goroutines.
func (p *pionPeer) emit(ev pionEvent) {
	ev.peer = p
	select {
	case p.events <- ev:
	case <-p.done:
	}
}

// watchChannel reports dc's open and messages. Safe from any goroutine: it
// touches only pion and p.emit.
func (p *pionPeer) watchChannel(dc *webrtc.DataChannel) {
	p.dc = dc
	dc.OnOpen(func() { p.emit(pionEvent{kind: "open", dc: dc}) })
	dc.OnMessage(func(msg webrtc.DataChannelMessage) { p.emit(pionEvent{kind: "message", dc: dc, msg: &msg}) })
}

func (p *pionPeer) setLocal(d webrtc.SessionDescription) {
	if err := p.pc.SetLocalDescription(d); err != nil {
		p.t.Fatalf("%s: set local %s: %v", p.name, d.Type, err)
	}
	p.localUfrag = sdpUfrag(d.SDP)
	if p.localUfrag == "" {
		p.t.Fatalf("%s: local %s has no ice-ufrag:\n%s", p.name, d.Type, d.SDP)
	}
}

// signal sends s to the other party through the mesh, with an id so that
// the server's ack is checked too.
func (p *pionPeer) signal(s pionSignal) {
	data, err := json.Marshal(s)
	if err != nil {
		p.t.Fatalf("%s: marshal signal: %v", p.name, err)
	}
	p.seq++
	id := p.name + "-sig-" + strconv.Itoa(p.seq)
	p.acks[id] = true
	p.other.inbound = append(p.other.inbound, data)
	p.c.Send(&messages.Envelope{Type: messages.TypeSignal, ID: id, Call: p.call, Data: data})
}

// frame handles one frame from the mesh: acks of our signals, and the other
// party's signals, which must be exactly what it sent, in order.
func (p *pionPeer) frame(e *messages.Envelope) {
	switch e.Type {
	case messages.TypeAck:
		if !p.acks[e.ID] || (e.Call != "" && e.Call != p.call) {
			p.t.Fatalf("%s: unexpected ack %s", p.c, describe(e))
		}
		delete(p.acks, e.ID)
	case messages.TypeSignal:
		if e.Call != p.call || e.From != p.other.c.User {
			p.t.Fatalf("%s: signal %s, want call %s from %s", p.c, describe(e), p.call, p.other.c.User)
		}
		if len(p.inbound) == 0 {
			p.t.Fatalf("%s: signal nobody sent: %s", p.c, describe(e))
		}
		if want := p.inbound[0]; !bytes.Equal(e.Data, want) {
			p.t.Fatalf("%s: relayed data differs from what %s sent:\n got %s\nwant %s", p.c, p.other.name, e.Data, want)
		}
		p.inbound = p.inbound[1:]
		p.remoteSignal(e.Data)
	default:
		p.t.Fatalf("%s: unexpected frame during negotiation: %s", p.c, describe(e))
	}
}

func (p *pionPeer) remoteSignal(data []byte) {
	var s pionSignal
	if err := json.Unmarshal(data, &s); err != nil {
		p.t.Fatalf("%s: undecodable signal %s: %v", p.name, data, err)
	}
	switch {
	case s.Description != nil && s.Candidate == nil:
		want := webrtc.SDPTypeAnswer
		if !p.offerer {
			want = webrtc.SDPTypeOffer
		}
		if s.Description.Type != want || p.pc.RemoteDescription() != nil {
			p.t.Fatalf("%s: unexpected %s description (want one %s)", p.name, s.Description.Type, want)
		}
		if err := p.pc.SetRemoteDescription(*s.Description); err != nil {
			p.t.Fatalf("%s: set remote %s: %v", p.name, s.Description.Type, err)
		}
		p.remoteUfrag = sdpUfrag(s.Description.SDP)
		if !p.offerer {
			answer, err := p.pc.CreateAnswer(nil)
			if err != nil {
				p.t.Fatalf("%s: create answer: %v", p.name, err)
			}
			p.setLocal(answer)
			p.signal(pionSignal{Description: &answer})
		}
		for _, c := range p.pending {
			p.addCandidate(c)
		}
		p.pending = nil
	case s.Candidate != nil && s.Description == nil:
		if p.pc.RemoteDescription() == nil {
			p.pending = append(p.pending, *s.Candidate)
			p.buffered++
			return
		}
		p.addCandidate(*s.Candidate)
	default:
		p.t.Fatalf("%s: signal is neither a description nor a candidate: %s", p.name, data)
	}
}

func (p *pionPeer) addCandidate(c webrtc.ICECandidateInit) {
	// A browser rejects a candidate of another ICE generation; pion ignores
	// the field, so check it here.
	if c.UsernameFragment != nil && *c.UsernameFragment != p.remoteUfrag {
		p.t.Fatalf("%s: candidate for ufrag %q, remote description has %q", p.name, *c.UsernameFragment, p.remoteUfrag)
	}
	parsed, err := ice.UnmarshalCandidate(strings.TrimPrefix(c.Candidate, "candidate:"))
	if err != nil {
		p.t.Fatalf("%s: unparsable candidate %q: %v", p.name, c.Candidate, err)
	}
	p.relayed[net.JoinHostPort(parsed.Address(), strconv.Itoa(parsed.Port()))] = true
	if err := p.pc.AddICECandidate(c); err != nil {
		p.t.Fatalf("%s: add candidate %q: %v", p.name, c.Candidate, err)
	}
}

// event handles one pion callback.
func (p *pionPeer) event(ev pionEvent) {
	switch ev.kind {
	case "candidate":
		if ev.candidate == nil {
			p.gathered = true
			return
		}
		init := ev.candidate.ToJSON()
		ufrag := p.localUfrag
		init.UsernameFragment = &ufrag // as a browser's candidate.toJSON() has it
		p.signal(pionSignal{Candidate: &init})
	case "ice":
		p.t.Logf("%s: ICE %s", p.name, ev.ice)
		switch ev.ice {
		case webrtc.ICEConnectionStateConnected:
			p.iceConnected = true
		case webrtc.ICEConnectionStateFailed, webrtc.ICEConnectionStateClosed:
			p.t.Fatalf("%s: ICE %s", p.name, ev.ice)
		}
	case "state":
		p.t.Logf("%s: peer connection %s", p.name, ev.state)
		switch ev.state {
		case webrtc.PeerConnectionStateConnected:
			p.connected = true
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			p.t.Fatalf("%s: peer connection %s", p.name, ev.state)
		}
	case "channel":
		if p.offerer || p.dc != nil || ev.dc.Label() != "chat" {
			p.t.Fatalf("%s: unexpected data channel %q", p.name, ev.dc.Label())
		}
		p.watchChannel(ev.dc)
	case "open":
		p.open = true
	case "message":
		want := "hello alice"
		if !p.offerer {
			want = "hello bob"
		}
		if p.got != nil || !ev.msg.IsString || string(ev.msg.Data) != want {
			p.t.Fatalf("%s: message %q (string %v), want one %q", p.name, ev.msg.Data, ev.msg.IsString, want)
		}
		p.got = ev.msg
	default:
		p.t.Fatalf("%s: unknown event %q", p.name, ev.kind)
	}
}

// lost fails the test: the mesh closed the client mid-negotiation.
func (p *pionPeer) lost() {
	for {
		select {
		case e := <-p.c.frames:
			p.t.Logf("%s: frame before close: %s", p.c, describe(e))
		default:
			p.t.Fatalf("%s: connection closed during negotiation: %v", p.c, p.c.err)
		}
	}
}

func (p *pionPeer) finished() bool { return p.awaiting() == "" }

// awaiting describes what p still waits for, or "" when it has it all.
func (p *pionPeer) awaiting() string {
	var w []string
	if p.pc.RemoteDescription() == nil {
		w = append(w, "remote description")
	}
	if len(p.inbound) > 0 {
		w = append(w, fmt.Sprintf("%d signals from %s", len(p.inbound), p.other.name))
	}
	if len(p.acks) > 0 {
		w = append(w, fmt.Sprintf("%d acks", len(p.acks)))
	}
	if !p.gathered {
		w = append(w, "end of gathering")
	}
	if !p.iceConnected {
		w = append(w, "ICE connected")
	}
	if !p.connected {
		w = append(w, "peer connection connected")
	}
	if !p.open {
		w = append(w, "open data channel")
	}
	if p.got == nil {
		w = append(w, "a message")
	}
	if len(w) == 0 {
		return ""
	}
	return p.name + ": " + strings.Join(w, ", ")
}

// checkSelectedPair proves the candidates relayed by the mesh were the ones
// used: the remote end of the pair ICE selected is an address p learnt
// through the mesh (a peer-reflexive candidate would otherwise rescue a
// corrupted one).
func (p *pionPeer) checkSelectedPair(relay bool) {
	pair, err := p.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		p.t.Fatalf("%s: no selected candidate pair: %v", p.name, err)
	}
	if relay && (pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay) {
		p.t.Fatalf("%s: selected pair %s is not relay on both ends", p.name, pair)
	}
	remote := net.JoinHostPort(pair.Remote.Address, strconv.Itoa(int(pair.Remote.Port)))
	if !p.relayed[remote] {
		p.t.Fatalf("%s: selected pair %s uses remote %s, not one of the relayed candidates %v", p.name, pair, remote, p.relayed)
	}
	p.t.Logf("%s: selected pair %s; %d candidates relayed to it, %d buffered before the remote description", p.name, pair, len(p.relayed), p.buffered)
}

// sdpUfrag returns the first a=ice-ufrag of an SDP.
func sdpUfrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\n") {
		if u, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return u
		}
	}
	return ""
}
