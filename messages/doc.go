// Package messages defines everything that crosses a wire in callmesh: the
// client envelope and its codec, message types, end reasons and error codes,
// the internal gateway↔router payloads, and the builders of NATS subjects and
// JetStream KV keys. It imports only the standard library.
//
// PROTOCOL.md beside this file is the contract for client authors.
package messages
