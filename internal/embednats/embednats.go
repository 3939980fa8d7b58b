// Package embednats runs a NATS server with JetStream inside the process,
// for `callmesh dev` and for tests.
package embednats

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures the embedded server.
type Options struct {
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// StoreDir is JetStream's storage directory (required).
	StoreDir string
}

// Start runs a server and waits until it accepts connections.
func Start(opts Options) (*server.Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embednats: store dir is required")
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "callmesh-embedded",
		Host:       opts.Host,
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embednats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embednats: server not ready within 10s")
	}
	return srv, nil
}
