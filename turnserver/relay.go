package turnserver

import (
	"errors"
	"net"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// relayPorts allocates relay sockets within the configured port range and
// counts what they relay. A client may ask for a port (REQUESTED-PORT
// reservations); one outside the range is refused, so a client cannot make
// the server bind an arbitrary port.
type relayPorts struct {
	*turn.RelayAddressGeneratorPortRange
	toPeer, fromPeer             prometheus.Counter
	toPeerPackets, fromPeerPacks prometheus.Counter
}

var errPortOutOfRange = errors.New("turn: requested relay port outside turn.port_min–turn.port_max")

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (r *relayPorts) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if p := conf.RequestedPort; p != 0 && (p < int(r.MinPort) || p > int(r.MaxPort)) {
		return nil, nil, errPortOutOfRange
	}
	conn, addr, err := r.RelayAddressGeneratorPortRange.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	return &countingConn{PacketConn: conn, r: r}, addr, nil
}

// AllocateListener implements turn.RelayAddressGenerator: TCP relays
// (RFC 6062) are not offered.
func (r *relayPorts) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errors.ErrUnsupported
}

// AllocateConn implements turn.RelayAddressGenerator: TCP relays are not
// offered.
func (r *relayPorts) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errors.ErrUnsupported
}

// countingConn is a relay socket that counts the bytes it relays: what it
// reads came from a peer, what it writes goes to one.
type countingConn struct {
	net.PacketConn
	r *relayPorts
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		c.r.fromPeer.Add(float64(n))
		c.r.fromPeerPacks.Inc()
	}
	return n, addr, err
}

func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if n > 0 {
		c.r.toPeer.Add(float64(n))
		c.r.toPeerPackets.Inc()
	}
	return n, err
}
