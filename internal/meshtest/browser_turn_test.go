package meshtest

import (
	"encoding/json"
	"testing"
	"time"
)

// selectedPairJS is the types of the selected candidate pair of the
// current call, "local/remote", once there is one.
const selectedPairJS = `(async () => {
	const stats = await demo.call.pc.getStats();
	let pair = null;
	stats.forEach(s => {
		if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
	});
	if (!pair) stats.forEach(s => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
	if (!pair) return "";
	const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
	return local && remote ? local.candidateType + "/" + remote.candidateType : "";
})()`

// The demo's call between two Chromium pages on two gateways runs through
// the built-in TURN server only: the gateways hand out ice.transport_policy
// relay with the TURN server and each user's credentials, callmesh.js
// passes both to RTCPeerConnection, video is decoded on both sides, and the
// selected candidate pair is relay at both ends. (Chromium is started with
// --allow-loopback-in-peer-connection; the TURN server relays on 127.0.0.1,
// with loopback among its allowed peers.)
func TestBrowserRelayOnly(t *testing.T) {
	chromium := findChromium(t)
	srv, relayOnly := startRelayTURN(t)
	m := Start(t, Options{ResumeGrace: 5 * time.Second, Gateway: demoGateway(relayOnly)})
	s := startBrowser(t, chromium)
	alice := s.open(t, "alice", m.Gateways[0].HTTP.URL+"/", laptop)
	bob := s.open(t, "bob", m.Gateways[1].HTTP.URL+"/", laptop)
	alice.connect(t, "alice")
	bob.connect(t, "bob")

	call := establish(t, alice, bob) // both decode video
	for _, p := range []*page{alice, bob} {
		var pair string
		if err := json.Unmarshal(p.waitFor(t, "a selected candidate pair", selectedPairJS), &pair); err != nil {
			t.Fatal(err)
		}
		if pair != "relay/relay" {
			t.Fatalf("%s: selected candidate pair is %s, want relay/relay", p.name, pair)
		}
		var policy string
		if err := json.Unmarshal(p.waitFor(t, "the peer connection's policy", `demo.call.pc.getConfiguration().iceTransportPolicy`), &policy); err != nil || policy != "relay" {
			t.Fatalf("%s: iceTransportPolicy %q (%v)", p.name, policy, err)
		}
	}
	if n := srv.Allocations(); n < 2 {
		t.Fatalf("%d TURN allocations during call %s, want one per page at least", n, call)
	}
	alice.click(t, "hangup")
	bob.waitFor(t, `body state "idle"`, `document.body.dataset.state === "idle"`)
}
