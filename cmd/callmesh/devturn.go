package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/turnserver"
)

// startTURN starts dev's TURN server (dev.turn) on loopback and hands it
// out in welcome: an ice.servers entry with its secret, so every client
// gets its own expiring credentials. It relays between loopback addresses
// only (turn.allow_peer_cidrs gets 127.0.0.0/8), which is what two
// browsers on the developer's machine need.
func (m *devMesh) startTURN(cfg *Config, metrics prometheus.Registerer) error {
	t := devTURNConfig(cfg, m.log, metrics)
	_, port, _ := net.SplitHostPort(t.UDPAddr)
	var err error
	if m.turn, err = turnserver.Start(t); err != nil {
		// The port is taken (another dev, a coturn): any free one will do.
		m.turnNote = fmt.Sprintf("port %s is busy, took a free one", port)
		t.UDPAddr, t.TCPAddr = "127.0.0.1:0", ""
		if m.turn, err = turnserver.Start(t); err != nil {
			return fmt.Errorf("dev.turn: %w", err)
		}
	}
	udp := m.turn.Addrs["udp"].String()
	urls := []string{"turn:" + udp + "?transport=udp"}
	if tcp := m.turn.Addrs["tcp"]; tcp != nil {
		urls = append(urls, "turn:"+tcp.String()+"?transport=tcp")
	}
	cfg.ICE.Servers = append(cfg.ICE.Servers, gateway.ICEServerConfig{URLs: urls, Secret: t.Secret})
	return nil
}

// devTURNConfig is the config of dev's TURN server: the turn.* keys on
// 127.0.0.1 (the port of turn.udp_addr, for UDP and TCP), relaying between
// loopback addresses, with a secret made for the session unless
// turn.secret is set.
func devTURNConfig(cfg *Config, log *slog.Logger, metrics prometheus.Registerer) turnserver.Config {
	t := cfg.turnConfig(log, metrics)
	if t.Secret == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b) // never fails
		t.Secret = hex.EncodeToString(b)
	}
	t.RelayIP, t.RelayBind = "127.0.0.1", "127.0.0.1"
	t.AllowPeerCIDRs = append(slices.Clip(t.AllowPeerCIDRs), "127.0.0.0/8")
	_, port, err := net.SplitHostPort(cfg.TURN.UDPAddr)
	if err != nil || cfg.TURN.UDPAddr == "" {
		port = "3478"
	}
	t.UDPAddr, t.TCPAddr, t.TLSAddr = "127.0.0.1:"+port, "127.0.0.1:"+port, ""
	return t
}

// printTURN is the banner's line about dev's TURN server.
func (m *devMesh) printTURN(w io.Writer, cfg *Config) {
	if m.turn == nil {
		fmt.Fprintln(w, "  turn        off (dev.turn)")
		return
	}
	note := ""
	if m.turnNote != "" {
		note = "; " + m.turnNote
	}
	fmt.Fprintf(w, "  turn        turn:%s  (relays on 127.0.0.1 ports %d–%d; handed out in welcome%s)\n",
		m.turn.Addrs["udp"], cfg.TURN.PortMin, cfg.TURN.PortMax, note)
}
