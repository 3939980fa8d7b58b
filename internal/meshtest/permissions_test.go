package meshtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
	"github.com/callmesh/callmesh/router"
)

// deployConfig is the NATS config the deployment ships; it includes
// nats-auth.conf, the users and their permissions.
const deployConfig = "../../deploy/nats.conf"

// The logins of deploy/nats-auth.conf: one per gateway, one for routers.
const (
	gateway1, gateway1Password = "gateway-1", "gateway-1-test-password"
	gateway2, gateway2Password = "gateway-2", "gateway-2-test-password"
	routerPassword             = "router-test-password"
	eventsPassword             = "events-test-password"
)

// gatewayLogins are the gateways' logins, by name.
var gatewayLogins = map[string]string{gateway1: gateway1Password, gateway2: gateway2Password}

// permissionsServer runs a NATS server from the shipped deploy config (only
// the port, the store directory and logging are changed) and returns it
// with the permission violations it logs.
func permissionsServer(t *testing.T) (*server.Server, *natstest.Violations) {
	t.Helper()
	// The variables the config references.
	t.Setenv("SERVER_NAME", "callmesh-permissions")
	t.Setenv("NATS_GATEWAY_1_PASSWORD", gateway1Password)
	t.Setenv("NATS_GATEWAY_2_PASSWORD", gateway2Password)
	t.Setenv("NATS_ROUTER_PASSWORD", routerPassword)
	t.Setenv("NATS_EVENTS_PASSWORD", eventsPassword)
	opts, err := server.ProcessConfigFile(deployConfig)
	if err != nil {
		t.Fatalf("%s: %v", deployConfig, err)
	}
	if !opts.JetStream || len(opts.Users) != 4 {
		t.Fatalf("%s: jetstream %v, %d users; want jetstream and users gateway-1, gateway-2, router and events", deployConfig, opts.JetStream, len(opts.Users))
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	v := &natstest.Violations{}
	srv.SetLogger(v, false, false)
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return srv, v
}

// asyncErrors collects the asynchronous errors of one connection.
type asyncErrors struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrors) handle(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

// waitViolation waits until the server has told the client that a publish
// to subject was refused.
func (a *asyncErrors) waitViolation(t *testing.T, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for Publish to %q", subject)
	deadline := time.Now().Add(Wait)
	for {
		a.mu.Lock()
		for _, err := range a.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				a.mu.Unlock()
				return
			}
		}
		errs := fmt.Sprint(a.errs)
		a.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no permissions violation for publish to %s; async errors: %s", subject, errs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connectAs opens a connection with user's credentials, closed with the
// test. Its asynchronous errors go to errs when it is not nil.
func connectAs(t *testing.T, srv *server.Server, user, password string, errs *asyncErrors, extra ...nats.Option) *nats.Conn {
	t.Helper()
	opts := append([]nats.Option{nats.Name("callmesh-" + user), nats.UserInfo(user, password), nats.PermissionErrOnSubscribe(true)}, extra...)
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(errs.handle))
	}
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// connectGateway logs in as the gateway name, with the inbox of a fresh
// gateway id of that name, as `callmesh gateway` does; it returns the id.
func connectGateway(t *testing.T, srv *server.Server, name string, errs *asyncErrors) (*nats.Conn, string) {
	t.Helper()
	names, _ := messages.NewNames(messages.DefaultPrefix)
	id := messages.NewGatewayID(name)
	return connectAs(t, srv, name, gatewayLogins[name], errs, nats.CustomInboxPrefix(names.GatewayInbox(id))), id
}

// permissionsMesh is a mesh on srv whose routers log in as `router` and
// whose gateways as gateway-1 and gateway-2 in turn (Mesh.AddRouter and
// AddGateway connect anonymously, so this mirrors them with credentials).
func permissionsMesh(t *testing.T, srv *server.Server, gateways, routers int) *Mesh {
	t.Helper()
	names, err := messages.NewNames(messages.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	m := &Mesh{
		t: t, NATS: srv, names: names, metrics: prometheus.NewRegistry(),
		opts: Options{Gateways: gateways, Routers: routers, RingTimeout: 30 * time.Second, ResumeGrace: 300 * time.Millisecond},
	}
	// Barrier publishes on user subjects, as gateways do.
	m.nc, _ = connectGateway(t, srv, gateway1, nil)
	// Routers first: they create the buckets, gateways only bind to them.
	m.addPermissionedRouters(t, srv, routers)
	for i := range gateways {
		cfg := m.GatewayConfig()
		cfg.Name = []string{gateway1, gateway2}[i%2]
		var nc *nats.Conn
		nc, cfg.ID = connectGateway(t, srv, cfg.Name, nil)
		gw, err := gateway.New(context.Background(), cfg, nc)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(gw.Handler())
		g := &Gateway{Server: gw, HTTP: hs, NC: nc, URL: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
		var once sync.Once
		t.Cleanup(func() { once.Do(g.shutdown) })
		m.Gateways = append(m.Gateways, g)
	}
	return m
}

// addPermissionedRouters starts n routers connected as the router user.
func (m *Mesh) addPermissionedRouters(t *testing.T, srv *server.Server, n int) {
	for range n {
		cfg := router.DefaultConfig()
		cfg.RingTimeout = m.opts.RingTimeout
		cfg.ResumeGrace = m.opts.ResumeGrace
		cfg.Resync = time.Second // the watchers re-create their consumers often
		cfg.Logger = quietLogger()
		cfg.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"router": strconv.Itoa(len(m.Routers))}, m.metrics)
		r, err := router.New(cfg, connectAs(t, srv, "router", routerPassword, nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = r.Shutdown(ctx)
		})
		m.Routers = append(m.Routers, r)
	}
}

// The shipped config lets the whole mesh work with per-role credentials: a
// call between two gateways (invite, incoming, accept, signal both ways,
// hangup), and a crashed gateway's call ended by a router's eviction, with
// no permission violation anywhere, start and shutdown included.
func TestNATSPermissionsMesh(t *testing.T) {
	srv, logged := permissionsServer(t)
	// Registered first, so it runs last: after every component has shut
	// down (a gateway retires its heartbeat, a router deletes its consumers).
	t.Cleanup(func() {
		if v := logged.All(); len(v) > 0 {
			t.Errorf("the mesh needed more than the config allows:\n%s", strings.Join(v, "\n"))
		}
	})
	if _, err := nats.Connect(srv.ClientURL()); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("anonymous connect: %v, want an authorization violation", err)
	}
	m := permissionsMesh(t, srv, 3, 2)
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")

	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "1", To: "bob", Data: json.RawMessage(`{"video":true}`)})
	call := alice.ExpectAck("1").Call
	alice.Expect(messages.TypeRinging)
	if in := bob.Expect(messages.TypeIncoming); in.Call != call || in.From != "alice" {
		t.Fatalf("incoming = %s", describe(in))
	}
	bob.Do(messages.TypeAccept, call)
	bob.Expect(messages.TypeAccepted)
	alice.Expect(messages.TypeAccepted)
	offer := json.RawMessage(`{"type":"offer","sdp":"v=0\r\n"}`)
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s1", Call: call, Data: offer})
	alice.ExpectAck("s1")
	relayed(t, bob, call, "alice", offer)
	answer := json.RawMessage(`{"type":"answer","sdp":"v=0\r\n"}`)
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s2", Call: call, Data: answer})
	bob.ExpectAck("s2")
	relayed(t, alice, call, "bob", answer)
	alice.Do(messages.TypeHangup, call)
	bob.ExpectEnded(call, messages.ReasonHangup)
	m.Barrier(alice)

	// Rooms: the routers write room records and hold busy locks for them.
	carol, dave := m.DialGrants(0, "carol", Everywhere), m.DialGrants(1, "dave", Everywhere)
	carol.Join("standup")
	dave.Join("standup")
	carol.ExpectMemberJoined("standup", dave)
	dave.RoomSignal("standup", carol, 1)
	carol.ExpectRoomSignal("standup", dave, 1)
	dave.RoomDo(messages.TypeLeave, "standup", "")
	carol.ExpectMemberLeft("standup", dave, messages.LeftLeft)

	// A router evicts the connections of a crashed gateway: it writes
	// presence and ends the call.
	call = Establish(alice, bob)
	m.Gateways[1].Crash()
	alice.ExpectEnded(call, messages.ReasonDisconnected)
	bob = m.Dial(2, "bob")
	call = alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
	bob.Do(messages.TypeReject, call)
	alice.ExpectEnded(call, messages.ReasonRejected)
	// Long enough for the routers' watchers to resync (re-create their
	// consumers) at least once.
	time.Sleep(1500 * time.Millisecond)
	m.Barrier(alice)
	m.Barrier(bob)
}

// routerBuckets creates both buckets as a router does, with the router's
// credentials, and returns the calls bucket.
func routerBuckets(t *testing.T, srv *server.Server) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	js, err := jetstream.New(connectAs(t, srv, "router", routerPassword, nil))
	if err != nil {
		t.Fatal(err)
	}
	names, _ := messages.NewNames(messages.DefaultPrefix)
	store, err := router.OpenStore(ctx, js, names, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := presence.Open(ctx, js, names, 1); err != nil {
		t.Fatal(err)
	}
	return store.KV()
}

// A gateway's credentials cannot write router state, by any path; they can
// publish on any user's subject, which relay needs.
func TestNATSPermissionsGateway(t *testing.T) {
	srv, _ := permissionsServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	calls := routerBuckets(t, srv)
	busy := messages.BusyKey("alice")
	if _, err := calls.Create(ctx, busy, []byte("the-real-call")); err != nil {
		t.Fatal(err)
	}

	errs := &asyncErrors{}
	gnc, _ := connectGateway(t, srv, gateway1, errs)
	gjs, err := jetstream.New(gnc)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(what, subject string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: succeeded with gateway credentials", what)
		}
		errs.waitViolation(t, subject)
	}
	attempt := func() (context.Context, context.CancelFunc) {
		// A refused request gets no reply: it fails when this expires.
		return context.WithTimeout(ctx, 500*time.Millisecond)
	}

	// A JetStream publish (with ack) to a busy lock and to a call record.
	for _, key := range []string{busy, messages.BusyKey("mallory"), messages.CallKey("forged")} {
		actx, acancel := attempt()
		_, err := gjs.Publish(actx, "$KV.callmesh_calls."+key, []byte("forged"))
		acancel()
		refused("publish to "+key, "$KV.callmesh_calls."+key, err)
	}
	// kv.Put needs a handle on the bucket: binding to it (STREAM.INFO) and
	// updating its stream (STREAM.UPDATE) are refused. (A Put is the
	// JetStream publish above.)
	actx, acancel := attempt()
	kv, err := gjs.KeyValue(actx, "callmesh_calls")
	acancel()
	refused("bind the calls bucket", "$JS.API.STREAM.INFO.KV_callmesh_calls", err)
	if kv != nil {
		t.Fatal("got a calls bucket handle")
	}
	actx, acancel = attempt()
	_, err = gjs.UpdateStream(actx, jetstream.StreamConfig{Name: "KV_callmesh_calls", Subjects: []string{"$KV.callmesh_calls.>"}})
	acancel()
	refused("update the calls bucket", "$JS.API.STREAM.UPDATE.KV_callmesh_calls", err)
	// Nor any other JetStream API on the calls stream.
	for _, api := range []string{"STREAM.PURGE", "STREAM.DELETE", "DIRECT.GET"} {
		subject := "$JS.API." + api + ".KV_callmesh_calls"
		if api == "DIRECT.GET" {
			subject += ".$KV.callmesh_calls." + busy
		}
		actx, acancel := attempt()
		_, err := gnc.RequestWithContext(actx, subject, []byte(`{}`))
		acancel()
		refused(api, subject, err)
	}
	// A plain core publish to a key is dropped too.
	if err := gnc.Publish("$KV.callmesh_calls."+busy, []byte("forged")); err != nil {
		t.Fatal(err)
	}
	errs.waitViolation(t, "$KV.callmesh_calls."+busy)
	// So is a forged router delivery (a binding, an ended) to any gateway,
	// itself included.
	for _, subject := range []string{"callmesh.gw.gateway-2.x.deliver", "callmesh.gw.gateway-1.x.deliver"} {
		if err := gnc.Publish(subject, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		errs.waitViolation(t, subject)
	}

	// The lock is untouched and no other key appeared.
	if e, err := calls.Get(ctx, busy); err != nil || string(e.Value()) != "the-real-call" || e.Revision() != 1 {
		t.Fatalf("busy lock after the attempts: %v, %v", e, err)
	}
	for _, key := range []string{messages.BusyKey("mallory"), messages.CallKey("forged")} {
		if _, err := calls.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("%s: %v, want not found", key, err)
		}
	}

	// The gateway cannot take the routers' requests, in or out of their
	// queue group.
	for _, queue := range []string{"", "callmesh-routers"} {
		sub, err := gnc.QueueSubscribeSync("callmesh.router", queue)
		if err == nil {
			_, err = sub.NextMsg(Wait)
		}
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("gateway subscribes to callmesh.router (queue %q): %v", queue, err)
		}
	}

	// Allowed, and inherent: a gateway publishes on any user's subject, for
	// relay, so a compromised one can send a user anything in anyone's name.
	// Gateways are the trust boundary for client identity.
	names, _ := messages.NewNames(messages.DefaultPrefix)
	watcher, _ := connectGateway(t, srv, gateway2, nil)
	sub, err := watcher.SubscribeSync(names.UserSubject("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := gnc.Publish(names.UserSubject("bob"), []byte("in alice's name")); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(Wait); err != nil || string(msg.Data) != "in alice's name" {
		t.Fatalf("publish to another user's subject: %v, %v", msg, err)
	}
}

// The router's credentials do what a router does and no more: it cannot
// read the users' subjects (signal, SDP, candidates), subscribe to requests
// outside the routers' queue group, or write gateway heartbeats.
func TestNATSPermissionsRouter(t *testing.T) {
	srv, _ := permissionsServer(t)
	errs := &asyncErrors{}
	rnc := connectAs(t, srv, "router", routerPassword, errs)
	names, _ := messages.NewNames(messages.DefaultPrefix)

	for _, s := range []struct{ subject, queue string }{
		{names.UserSubject("bob"), ""},
		{"callmesh.gw.*.*.deliver", ""},
		{"callmesh.gw.>", ""},
		{"callmesh.user.*", ""},
		{"callmesh.>", ""},
		{names.RouterSubject(), ""}, // a plain subscription would get every request
		{names.RouterSubject(), "another-group"},
		{"$KV.callmesh_presence.>", ""},
	} {
		sub, err := rnc.QueueSubscribeSync(s.subject, s.queue)
		if err == nil {
			_, err = sub.NextMsg(Wait)
		}
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("router subscribes to %s (queue %q): %v, want a permissions violation", s.subject, s.queue, err)
		}
	}
	// Its own queue group is fine.
	if _, err := rnc.QueueSubscribeSync(names.RouterSubject(), names.RouterQueue()); err != nil {
		t.Fatal(err)
	}

	// Publishes outside its role: heartbeats, requests, anyone's inbox, the
	// users' subjects (signal is the gateways').
	for _, subject := range []string{"$KV.callmesh_presence.gw.gateway-1.x", names.RouterSubject(), "_INBOX.someone.else", names.UserSubject("bob")} {
		if err := rnc.Publish(subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
		errs.waitViolation(t, subject)
	}
}

// A compromised gateway cannot write router state through the back door of
// a stream update: were it allowed $JS.API.STREAM.UPDATE on the presence
// stream, it could add a RePublish into $KV.callmesh_calls.>, which NATS
// applies without checking client permissions. Gateways only bind to the
// bucket, and the shipped config refuses the update.
func TestNATSPermissionsGatewayStreamUpdate(t *testing.T) {
	srv, _ := permissionsServer(t)
	calls := routerBuckets(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	gnc, _ := connectGateway(t, srv, gateway1, nil)
	gjs, err := jetstream.New(gnc)
	if err != nil {
		t.Fatal(err)
	}

	// The presence stream's config, with a republish into the calls bucket.
	jsz, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Config: true})
	if err != nil {
		t.Fatal(err)
	}
	var cfg jetstream.StreamConfig
	for _, acc := range jsz.AccountDetails {
		for _, st := range acc.Streams {
			if st.Name == "KV_callmesh_presence" {
				b, _ := json.Marshal(st.Config)
				if err := json.Unmarshal(b, &cfg); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if cfg.Name == "" {
		t.Fatal("no presence stream")
	}
	cfg.RePublish = &jetstream.RePublish{Source: "$KV.callmesh_presence.user.*", Destination: "$KV.callmesh_calls.busy.{{wildcard(1)}}"}
	uctx, ucancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = gjs.UpdateStream(uctx, cfg)
	ucancel()
	if err != nil {
		return // refused: the hole is closed
	}
	busy := messages.BusyKey("alice")
	if _, err := gjs.Publish(ctx, "$KV.callmesh_presence."+messages.UserKey("alice"), []byte("forged-call")); err != nil {
		t.Fatal(err)
	}
	var e jetstream.KeyValueEntry
	deadline := time.Now().Add(Wait)
	for e, err = calls.Get(ctx, busy); err != nil && time.Now().Before(deadline); e, err = calls.Get(ctx, busy) {
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the gateway reconfigured the presence stream, but nothing reached the calls bucket (%v): "+
			"is the hole closed? then the update itself should be refused", err)
	}
	t.Fatalf("with gateway credentials, a RePublish on the presence stream wrote %s = %q into the calls bucket", busy, e.Value())
}

// The events login tails the events stream and runs a webhook forwarder
// (a durable consumer with acknowledgements), with no permission violation;
// it cannot publish an event, read signal or touch the calls bucket.
func TestNATSPermissionsEvents(t *testing.T) {
	srv, logged := permissionsServer(t)
	m := permissionsMesh(t, srv, 2, 1)
	enc := connectAs(t, srv, "events", eventsPassword, nil)
	js, err := jetstream.New(enc)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := messages.NewNames(messages.DefaultPrefix)
	got := make(chan string, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- string(body)
	}))
	defer hook.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- events.Forward(ctx, js, names, events.WebhookConfig{URL: hook.URL, Secret: "whsec-0123456789", Timeout: time.Second, MaxAttempts: 3, Durable: "perm"},
			quietLogger(), nil)
	}()
	natstest.WaitFor(t, "the webhook's consumer", func() error {
		_, err := js.Consumer(ctx, names.EventsStream(), "perm")
		return err
	})
	oc, err := js.OrderedConsumer(ctx, names.EventsStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}

	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
	select {
	case body := <-got:
		if !strings.Contains(body, call) {
			t.Fatalf("webhook got %s", body)
		}
	case <-time.After(Wait):
		t.Fatal("no webhook POST")
	}
	if msg, err := oc.Next(jetstream.FetchMaxWait(Wait)); err != nil || !strings.Contains(string(msg.Data()), call) {
		t.Fatalf("tail: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := logged.All(); len(v) > 0 {
		t.Fatalf("the events login needed more than the config allows:\n%s", strings.Join(v, "\n"))
	}
	// Nothing else: no event of its own, no signal, no calls bucket.
	errs := &asyncErrors{}
	nc := connectAs(t, srv, "events", eventsPassword, errs)
	for _, subject := range []string{names.EventSubject("forged", ""), names.UserSubject("alice"), "$KV.callmesh_calls.busy.x"} {
		if err := nc.Publish(subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		errs.waitViolation(t, subject)
	}
}
