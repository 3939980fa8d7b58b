package courier_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/internal/natstest"
)

// startServer runs an embedded server without JetStream, stopped with the
// test. With cluster, it listens for routes and dials routes.
func startServer(t testing.TB, name string, cluster bool, routes ...string) *server.Server {
	t.Helper()
	opts := &server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true}
	if cluster {
		opts.Cluster = server.ClusterOpts{Name: "repro", Host: "127.0.0.1", Port: -1}
		for _, r := range routes {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", Host: r})
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(natstest.Wait) {
		t.Fatalf("server %s not ready", name)
	}
	return srv
}

// solo runs one server (no JetStream) and returns a courier on one
// connection and a second connection for the subscriber.
func solo(t *testing.T) (*courier.Courier, *nats.Conn, *nats.Conn) {
	t.Helper()
	srv := startServer(t, "solo", false)
	pub := natstest.Connect(t, srv, "pub")
	return newCourier(t, pub), pub, natstest.Connect(t, srv, "sub")
}

// newCourier returns a courier on nc, closed with the test.
func newCourier(t *testing.T, nc *nats.Conn) *courier.Courier {
	t.Helper()
	cr, err := courier.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cr.Close() })
	return cr
}

type sent struct {
	answer *nats.Msg
	tries  int
	err    error
}

// sendAsync runs Send in a goroutine.
func sendAsync(ctx context.Context, cr *courier.Courier, msg *nats.Msg, attempt time.Duration) <-chan sent {
	done := make(chan sent, 1)
	go func() {
		a, n, err := cr.Send(ctx, msg, attempt)
		done <- sent{a, n, err}
	}()
	return done
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(natstest.Wait):
		t.Fatalf("%s: nothing within %v", what, natstest.Wait)
		panic("unreachable")
	}
}

func subscribe(t *testing.T, nc *nats.Conn, subject string, ch chan *nats.Msg) {
	t.Helper()
	if _, err := nc.ChanSubscribe(subject, ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestSendReturnsAfterTheAnswer(t *testing.T) {
	cr, _, sub := solo(t)
	held := make(chan *nats.Msg, 1)
	subscribe(t, sub, "x", held)

	done := sendAsync(t.Context(), cr, &nats.Msg{Subject: "x", Data: []byte("hello")}, natstest.Wait)
	m := recv(t, held, "message")
	if string(m.Data) != "hello" {
		t.Fatalf("subscriber got %q", m.Data)
	}
	select {
	case r := <-done:
		t.Fatalf("Send returned before the answer: %v", r.err)
	default:
	}
	if err := m.Respond([]byte("receipt")); err != nil {
		t.Fatal(err)
	}
	r := recv(t, done, "Send")
	if r.err != nil || r.tries != 1 || string(r.answer.Data) != "receipt" {
		t.Fatalf("Send = %v, %d tries, %v; want the receipt at the first try", r.answer, r.tries, r.err)
	}
}

func TestSendRetriesUntilSomeoneSubscribes(t *testing.T) {
	cr, pub, sub := solo(t)
	out0, in0 := pub.Stats().OutMsgs, pub.Stats().InMsgs

	ctx, cancel := context.WithTimeout(t.Context(), natstest.Wait)
	defer cancel()
	done := sendAsync(ctx, cr, &nats.Msg{Subject: "late", Data: []byte("1")}, natstest.Wait)
	// Three posts, each answered by the server's "no responders" (nobody
	// else answers on this server); an attempt of 10 s cannot have ended.
	natstest.Eventually(t, "three posts refused", func() bool {
		s := pub.Stats()
		return s.OutMsgs-out0 >= 3 && s.InMsgs-in0 >= 3
	})

	got := make(chan *nats.Msg, 64)
	go func() { // the subscriber comes
		if _, err := sub.Subscribe("late", func(m *nats.Msg) {
			got <- m
			m.Respond([]byte("ok"))
		}); err != nil {
			t.Error(err)
		}
	}()
	r := recv(t, done, "Send")
	if r.err != nil || string(r.answer.Data) != "ok" {
		t.Fatalf("Send = %v, %v", r.answer, r.err)
	}
	if r.tries < 4 {
		t.Errorf("Send tried %d times, want at least 4 (3 refused)", r.tries)
	}
	if m := recv(t, got, "delivery"); string(m.Data) != "1" {
		t.Errorf("subscriber got %q", m.Data)
	}
}

func TestSendRetriesWhenNotAnswered(t *testing.T) {
	cr, _, sub := solo(t)
	copies := make(chan *nats.Msg, 64)
	subscribe(t, sub, "deaf", copies)

	done := sendAsync(t.Context(), cr, &nats.Msg{Subject: "deaf", Data: []byte("id-1")}, 100*time.Millisecond)
	first := recv(t, copies, "first copy") // not answered: the attempt runs out
	second := recv(t, copies, "second copy")
	if string(first.Data) != "id-1" || string(second.Data) != "id-1" || first.Reply == second.Reply {
		t.Fatalf("copies %q (reply %s), %q (reply %s): want the same message with a reply subject per try",
			first.Data, first.Reply, second.Data, second.Reply)
	}
	second.Respond([]byte("ok"))
	// A slow machine may have posted more copies meanwhile; answer them all.
	for {
		select {
		case m := <-copies:
			m.Respond([]byte("ok"))
			continue
		case r := <-done:
			if r.err != nil || r.tries < 2 {
				t.Fatalf("Send = %d tries, %v; want the answer at try 2 or later", r.tries, r.err)
			}
			return
		case <-time.After(natstest.Wait):
			t.Fatal("Send did not return")
		}
	}
}

func TestSendEndsWithItsContext(t *testing.T) {
	t.Run("no responders", func(t *testing.T) {
		cr, _, _ := solo(t)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		r := recv(t, sendAsync(ctx, cr, &nats.Msg{Subject: "nobody"}, natstest.Wait), "Send")
		if !errors.Is(r.err, context.DeadlineExceeded) || r.tries < 1 {
			t.Fatalf("Send = %d tries, %v; want the context's deadline", r.tries, r.err)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		cr, _, sub := solo(t)
		copies := make(chan *nats.Msg, 64)
		subscribe(t, sub, "silent", copies)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		r := recv(t, sendAsync(ctx, cr, &nats.Msg{Subject: "silent"}, 100*time.Millisecond), "Send")
		if !errors.Is(r.err, context.DeadlineExceeded) || r.tries < 1 {
			t.Fatalf("Send = %d tries, %v; want the context's deadline", r.tries, r.err)
		}
		// Every try was a post the subscriber got.
		natstest.Eventually(t, "a copy per try", func() bool { return len(copies) == r.tries })
	})
	t.Run("cancelled", func(t *testing.T) {
		cr, _, sub := solo(t)
		copies := make(chan *nats.Msg, 64)
		subscribe(t, sub, "silent", copies)
		ctx, cancel := context.WithCancel(t.Context())
		done := sendAsync(ctx, cr, &nats.Msg{Subject: "silent"}, natstest.Wait)
		recv(t, copies, "copy")
		cancel()
		if r := recv(t, done, "Send"); !errors.Is(r.err, context.Canceled) || r.tries != 1 {
			t.Fatalf("Send = %d tries, %v; want cancelled at the first try", r.tries, r.err)
		}
	})
}

// A late answer, after its ticket gave up or was cancelled, is dropped:
// it reaches no ticket, and the courier goes on routing answers.
func TestLateAnswerIsDropped(t *testing.T) {
	cr, _, sub := solo(t)
	msgs := make(chan *nats.Msg, 8)
	subscribe(t, sub, "slow", msgs)
	ctx := t.Context()

	gaveUp, err := cr.Post(&nats.Msg{Subject: "slow", Data: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	m1 := recv(t, msgs, "message 1")
	if _, err := gaveUp.Wait(ctx, 50*time.Millisecond); !errors.Is(err, courier.ErrNoAnswer) {
		t.Fatalf("Wait = %v, want ErrNoAnswer", err)
	}

	cancelled, err := cr.Post(&nats.Msg{Subject: "slow", Data: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	m2 := recv(t, msgs, "message 2")
	cancelled.Cancel()

	m1.Respond([]byte("late 1"))
	m2.Respond([]byte("late 2"))

	// The late answers came on the courier's inbox before this one.
	fresh, err := cr.Post(&nats.Msg{Subject: "slow", Data: []byte("3")})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, msgs, "message 3").Respond([]byte("fresh"))
	a, err := fresh.Wait(ctx, natstest.Wait)
	if err != nil || string(a.Data) != "fresh" {
		t.Fatalf("Wait = %v, %v; want the fresh answer", a, err)
	}
	if a, err := cancelled.Wait(ctx, 50*time.Millisecond); !errors.Is(err, courier.ErrNoAnswer) {
		t.Fatalf("the cancelled ticket got %v, %v; want ErrNoAnswer", a, err)
	}
}

func TestBackoff(t *testing.T) {
	if got := courier.Backoff(1); got != 10*time.Millisecond {
		t.Errorf("Backoff(1) = %v, want 10ms", got)
	}
	if got := courier.Backoff(2); got != 20*time.Millisecond {
		t.Errorf("Backoff(2) = %v, want 20ms", got)
	}
	prev := time.Duration(0)
	for n := 1; n <= 1000; n++ {
		b := courier.Backoff(n)
		if b < prev || b < 10*time.Millisecond || b > 500*time.Millisecond {
			t.Fatalf("Backoff(%d) = %v after %v: want non-decreasing, within [10ms, 500ms]", n, b, prev)
		}
		prev = b
	}
	if prev != 500*time.Millisecond {
		t.Errorf("Backoff(1000) = %v, want the 500ms cap", prev)
	}
	if got := courier.Backoff(1 << 40); got != 500*time.Millisecond {
		t.Errorf("Backoff(1<<40) = %v, want 500ms", got)
	}
}
