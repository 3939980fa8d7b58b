// Package faults is callmesh's fault harness. Its tests (build tag
// `faults`) run a 3-node NATS cluster with JetStream, two routers and three
// gateways as separate processes on loopback, drive calls and rooms with
// real WebSocket clients, inject one fault per scenario (client network
// drop, gateway SIGKILL, gateway SIGTERM, router SIGKILL, NATS node
// SIGKILL; gateway and router SIGKILL again with rooms) and print one row
// per fault of a markdown table of outcomes. Every
// wrong-outcome column must be 0 or the test fails.
//
//	go test -tags faults -v -run TestFaults ./internal/faults          # full
//	go test -tags faults -short -v -run TestFaults ./internal/faults   # CI
//
// The package has no non-test code; this file exists so that the package
// builds without the tag.
package faults
