package meshtest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// A compromised gateway is confined to its own name by the shipped config:
// it cannot read another gateway's deliveries, handover requests or
// replies, nor anyone's _INBOX; it cannot answer another's inbox or write
// another's heartbeat; and it cannot roll up or purge the presence bucket.
func TestNATSPermissionsConfineGateway(t *testing.T) {
	srv, _ := permissionsServer(t)
	routerBuckets(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()

	// What gateway-2 and a user have in presence.
	g2nc, g2 := connectGateway(t, srv, gateway2, nil)
	g2js, err := jetstream.New(g2nc)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := messages.NewNames(messages.DefaultPrefix)
	reg, err := presence.Bind(ctx, g2js, names)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.StartHeartbeat(ctx, g2, time.Second, time.Minute, quietLogger()); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx, "alice", "conn-a", presence.Conn{Gateway: g2, Holder: "h"}); err != nil {
		t.Fatal(err)
	}

	errs := &asyncErrors{}
	g1nc, _ := connectGateway(t, srv, gateway1, errs)
	for _, subject := range []string{
		names.DeliverSubject(g2), names.GatewaySubject(g2), names.GatewayInbox(g2) + ".>",
		"callmesh.gw.gateway-2.>", "callmesh.gw.*.*.deliver", "callmesh.gw.>", "_INBOX.>", "_INBOX.*.*",
	} {
		sub, err := g1nc.SubscribeSync(subject)
		if err == nil {
			_, err = sub.NextMsg(Wait)
		}
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("gateway-1 subscribes to %s: %v, want a permissions violation", subject, err)
		}
	}
	for _, subject := range []string{
		"$KV.callmesh_presence." + messages.GatewayKey(g2), // another's heartbeat
		names.GatewayInbox(g2) + ".forged",                 // answering another's request
		"_INBOX.forged",
	} {
		if err := g1nc.Publish(subject, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		errs.waitViolation(t, subject)
	}

	// Roll-ups and purges of the presence bucket, through a key gateway-1
	// may write, are refused by the stream.
	g1js, err := jetstream.New(g1nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, rollup := range []string{"all", "sub"} {
		msg := nats.NewMsg("$KV.callmesh_presence." + messages.UserKey("mallory"))
		msg.Header.Set("Nats-Rollup", rollup)
		msg.Data = []byte(`{"conns":{}}`)
		if _, err := g1js.PublishMsg(ctx, msg); err == nil || !strings.Contains(err.Error(), "rollup not permitted") {
			t.Errorf("publish with Nats-Rollup: %s: %v, want rollup not permitted", rollup, err)
		}
	}
	msg := nats.NewMsg("$KV.callmesh_presence." + messages.UserKey("alice"))
	msg.Header.Set("KV-Operation", "PURGE")
	msg.Header.Set("Nats-Rollup", "sub")
	if _, err := g1js.PublishMsg(ctx, msg); err == nil {
		t.Error("a KV purge of a user's record succeeded")
	}
	actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = g1nc.RequestWithContext(actx, "$JS.API.STREAM.PURGE.KV_callmesh_presence", []byte(`{}`))
	acancel()
	if err == nil {
		t.Error("a stream purge of presence succeeded")
	}
	errs.waitViolation(t, "$JS.API.STREAM.PURGE.KV_callmesh_presence")

	// Nothing of gateway-2's or alice's is gone.
	if _, err := reg.KV().Get(ctx, messages.GatewayKey(g2)); err != nil {
		t.Errorf("gateway-2's heartbeat: %v", err)
	}
	if conns, err := reg.Conns(ctx, "alice", kvutil.Leader); err != nil || len(conns) != 1 {
		t.Errorf("alice's connections: %v, %v", conns, err)
	}
}

// A binding published on a user's subject, which every gateway may
// publish on, is not applied: bob's signals still go to alice, his peer,
// and never to the user the forged binding names.
func TestForgedBindingIsIgnored(t *testing.T) {
	srv, _ := permissionsServer(t)
	m := permissionsMesh(t, srv, 2, 1)
	alice, bob, mallory := m.Dial(0, "alice"), m.Dial(1, "bob"), m.Dial(0, "mallory")
	call := Establish(alice, bob)

	attacker, _ := connectGateway(t, srv, gateway1, nil)
	d := messages.Delivery{
		ID: "forged", Conn: bob.Conn, User: "bob",
		Bind: &messages.Binding{Call: call, PeerUser: "mallory", PeerConn: mallory.Conn},
		Env:  messages.Envelope{Type: messages.TypeAccepted, Call: call, From: "bob"},
	}
	if err := attacker.Publish(m.names.UserSubject("bob"), messages.EncodeDelivery(&d)); err != nil {
		t.Fatal(err)
	}
	bob.Expect(messages.TypeAccepted) // a gateway may send a user anything
	bob.Signal(call, 1)
	alice.ExpectSignal(call, 1)
	m.Barrier(mallory)
}

// Frames another gateway hands over with a session reach the client only
// if they are valid server frames, re-encoded: here a fake gateway, which
// the session's presence entry names, answers the handover with garbage, a
// welcome in another user's name and a signal of a call the session is not
// in, between two valid frames.
func TestHandedOverFramesAreValidated(t *testing.T) {
	m := Start(t, Options{Gateways: 1, ResumeGrace: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	js, err := jetstream.New(m.nc)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := presence.Bind(ctx, js, m.names)
	if err != nil {
		t.Fatal(err)
	}
	fake := messages.NewGatewayID("gateway")
	if _, err := reg.StartHeartbeat(ctx, fake, time.Second, time.Minute, quietLogger()); err != nil {
		t.Fatal(err)
	}
	session := messages.NewID()
	token, hash := messages.NewResumeToken(session)
	if err := reg.Register(ctx, "victim", session, presence.Conn{Gateway: fake, Resume: hash, Holder: "h"}); err != nil {
		t.Fatal(err)
	}
	frames := []messages.HeldFrame{
		{ID: "d1", Frame: messages.Encode(&messages.Envelope{Type: messages.TypeEnded, Call: "c1", Reason: messages.ReasonHangup})},
		{Frame: []byte(`<script>alert(1)</script>`)},
		{Frame: []byte(`{"type":"welcome","data":{"user":"mallory","conn":"x"}}`)},
		{ID: "d2", Frame: messages.Encode(&messages.Envelope{Type: messages.TypeSignal, Call: "c2", From: "mallory", Data: json.RawMessage(`{"sdp":"x"}`)})},
		{Frame: []byte(`{"type":"pong","id":"p1"}`)},
	}
	answered := make(chan struct{}, 1)
	sub, err := m.nc.Subscribe(m.names.GatewaySubject(fake), func(msg *nats.Msg) {
		b, _ := json.Marshal(messages.HandoverReply{Found: true, Frames: frames})
		_ = msg.Respond(b)
		answered <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	c, resp, err := m.DialRaw(0, m.Token("victim"), "resume="+token)
	if err != nil {
		t.Fatalf("resume: %v (%v)", err, resp)
	}
	select {
	case <-answered:
	default:
		t.Fatal("the gateway did not ask the fake gateway for the session")
	}
	if !c.Welcome.Resumed || c.User != "victim" {
		t.Fatalf("welcome = %+v, want victim's session resumed", c.Welcome)
	}
	if e := c.Expect(messages.TypeEnded); e.Call != "c1" {
		t.Fatalf("first handed-over frame: %s", describe(e))
	}
	if e := c.Next(); e.Type != messages.TypePong || e.ID != "p1" {
		t.Fatalf("after the refused frames: %s, want pong p1", describe(e))
	}
	m.Barrier(c)
}

// A gateway that calls itself by another gateway's name is refused its
// subscriptions by NATS, and its start ends with an error that says why
// instead of waiting forever.
func TestGatewayUnderAnotherNameDoesNotStart(t *testing.T) {
	srv, _ := permissionsServer(t)
	routerBuckets(t, srv)
	names, _ := messages.NewNames(messages.DefaultPrefix)
	cfg := gateway.DefaultConfig()
	cfg.Auth = gateway.AuthConfig{Alg: "HS256", Secret: Secret}
	cfg.Logger = quietLogger()
	cfg.Name, cfg.ID = gateway2, messages.NewGatewayID(gateway2)
	nc := connectAs(t, srv, gateway1, gateway1Password, nil, nats.CustomInboxPrefix(names.GatewayInbox(cfg.ID)))
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	gw, err := gateway.New(ctx, cfg, nc)
	if err == nil {
		_ = gw.Shutdown(ctx)
		t.Fatal("a gateway logged in as gateway-1 started as gateway-2")
	}
	if ctx.Err() != nil || !strings.Contains(err.Error(), "gateway.name") {
		t.Fatalf("start: %v (context: %v), want the refusal naming gateway.name", err, ctx.Err())
	}
}
