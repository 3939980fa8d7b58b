// Package natstest gives tests a real NATS server with JetStream, a
// polling helper and a logger that keeps the server's permission
// violations. It is imported only by tests.
package natstest

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/embednats"
)

// Wait bounds every wait in the tests: a deadline for failing, never a
// timing being asserted.
const Wait = 10 * time.Second

// Server runs an embedded server with JetStream in t's temp dir, stopped
// with the test.
func Server(t testing.TB) *server.Server {
	t.Helper()
	srv, err := embednats.Start(embednats.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect opens a connection to srv, closed with the test, with the
// options given after the name.
func Connect(t testing.TB, srv *server.Server, name string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), append([]nats.Option{nats.Name(name)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream runs a server and returns a JetStream context on a fresh
// connection to it.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(Connect(t, Server(t), t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// WaitFor polls cond until it returns nil, failing the test after Wait
// with cond's last error.
func WaitFor(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Eventually is WaitFor for a condition that has nothing to explain.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, what, func() error {
		if !cond() {
			return errNotYet
		}
		return nil
	})
}

var errNotYet = errors.New("condition not met")
