package turnserver

import (
	"net"
	"net/netip"
)

// peerFilter decides which peer addresses a client may relay to
// (CreatePermission and ChannelBind). A TURN server relays from inside the
// operator's network, so by default it refuses every address that is not
// publicly routable: loopback, private (RFC 1918, IPv6 ULA), link-local,
// multicast, unspecified, the ranges in notRoutable, and the IPv4-mapped
// forms of these. Otherwise a client could use it to reach the operator's internal
// services (the classic TURN SSRF). Networks listed in allow are admitted.
type peerFilter struct {
	allow []netip.Prefix
}

// notRoutable are the ranges refused besides what netip classifies: "this
// network" (0/8), CGNAT (RFC 6598), reserved (240/4), and the NAT64
// prefixes, through which an IPv6 peer address can name any IPv4 one.
var notRoutable = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// allowed reports whether a client may relay to ip.
func (f peerFilter) allowed(ip net.IP) bool {
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range f.allow {
		if p.Contains(addr) {
			return true
		}
	}
	if !addr.IsGlobalUnicast() || addr.IsPrivate() {
		return false
	}
	for _, p := range notRoutable {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}
