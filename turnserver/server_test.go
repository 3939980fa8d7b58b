package turnserver

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callmesh/callmesh/internal/fielderr"
)

const testSecret = "turn-test-secret-0123456789"

// Vectors computed independently (openssl dgst -sha1 -hmac SECRET -binary |
// base64), so the credentials are coturn's use-auth-secret ones.
func TestCredentialVectors(t *testing.T) {
	user, pass := Credentials("north", "alice", time.Unix(1700000000, 0))
	if user != "1700000000:alice" || pass != "Cd/49soE35ICqcJF/bCTn8Z4OyE=" {
		t.Errorf("Credentials = %q, %q", user, pass)
	}
	if got := Password("secret-example", "1433895918506:carol"); got != "FDCrHzbrfXdhca0jgcCSKrDzH0c=" {
		t.Errorf("Password = %q", got)
	}
	for _, bad := range []string{"alice", "x:alice", ":alice", "123:", "-5:alice", ""} {
		if _, _, err := parseUsername(bad); err == nil {
			t.Errorf("parseUsername(%q) accepted", bad)
		}
	}
}

// start runs a server on loopback for the test; adjust changes the config.
func start(t *testing.T, adjust func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Secret, cfg.RelayIP = testSecret, "127.0.0.1"
	cfg.UDPAddr, cfg.TCPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.PortMin, cfg.PortMax = 40000, 40999
	cfg.Metrics = reg
	cfg.Logger = slog.New(slog.DiscardHandler)
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, reg
}

// allocate makes an allocation as username/password over UDP.
func allocate(t *testing.T, s *Server, username, password string) (*turn.Client, net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs["udp"].String()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn, Username: username, Password: password, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	relay, err := c.Allocate()
	return c, relay, err
}

func TestCredentialsChecked(t *testing.T) {
	s, reg := start(t, nil)
	future := time.Now().Add(time.Hour)
	user, pass := Credentials(testSecret, "alice", future)
	if _, _, err := allocate(t, s, user, pass); err != nil {
		t.Fatalf("valid credentials: %v", err)
	}
	expiredUser, expiredPass := Credentials(testSecret, "alice", time.Now().Add(-time.Second))
	otherUser, otherPass := Credentials("another-secret-0123456789", "alice", future)
	for name, c := range map[string][2]string{
		"expired":          {expiredUser, expiredPass},
		"forged password":  {user, "Cd/49soE35ICqcJF/bCTn8Z4OyE="},
		"other secret":     {otherUser, otherPass},
		"another user":     {strings.Replace(user, "alice", "mallory", 1), pass},
		"no expiry":        {"alice", Password(testSecret, "alice")},
		"expiry stretched": {strings.Replace(user, ":", "9:", 1), pass},
	} {
		if _, _, err := allocate(t, s, c[0], c[1]); err == nil {
			t.Errorf("%s: allocated", name)
		}
	}
	if got := testutil.ToFloat64(s.metrics.authFailures.WithLabelValues("Allocate")); got < 6 {
		t.Errorf("auth failures counted %v, want at least 6", got)
	}
	if got := testutil.ToFloat64(s.metrics.allocated); got != 1 {
		t.Errorf("allocations %v, want 1", got)
	}
	_ = reg
}

// The expiry is checked when allocating only: a live allocation keeps
// working after its credential expired, so a long call keeps its relay.
func TestExpiryOnAllocateOnly(t *testing.T) {
	s, _ := start(t, func(c *Config) { c.AllowPeerCIDRs = []string{"127.0.0.0/8"} })
	expiry := time.Now().Add(2 * time.Second).Truncate(time.Second)
	user, pass := Credentials(testSecret, "alice", expiry)
	c, _, err := allocate(t, s, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(expiry) + 1100*time.Millisecond)
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err != nil {
		t.Fatalf("CreatePermission on a live allocation after its credential expired: %v", err)
	}
	if _, _, err := allocate(t, s, user, pass); err == nil {
		t.Fatal("a new allocation with the expired credential went through")
	}
}

// Relaying to the operator's own networks is refused unless allowed; two
// allocations talk through the relay when loopback is allowed, and what
// they relay is counted.
func TestPeerAddresses(t *testing.T) {
	user, pass := Credentials(testSecret, "alice", time.Now().Add(time.Hour))
	denied, _ := start(t, nil)
	c, _, err := allocate(t, denied, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "100.64.0.1", "::ffff:10.0.0.1", "224.0.0.1"} {
		if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP(ip), Port: 9}); err == nil {
			t.Errorf("permission to %s granted", ip)
		}
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("8.8.8.8"), Port: 9}); err != nil {
		t.Errorf("permission to a public address refused: %v", err)
	}
	if got := testutil.ToFloat64(denied.metrics.peersRefused); got != 7 {
		t.Errorf("peers refused %v, want 7", got)
	}

	s, _ := start(t, func(c *Config) { c.AllowPeerCIDRs = []string{"127.0.0.0/8"} })
	_, a, err := allocate(t, s, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	bobUser, bobPass := Credentials(testSecret, "bob", time.Now().Add(time.Hour))
	_, b, err := allocate(t, s, bobUser, bobPass)
	if err != nil {
		t.Fatal(err)
	}
	// b must permit a's relay address before a's packets are let through.
	if _, err := b.WriteTo([]byte("hello a"), a.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := a.WriteTo([]byte("hello b"), b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := b.ReadFrom(buf)
		if err == nil && bytes.Equal(buf[:n], []byte("hello b")) && from.String() == a.LocalAddr().String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing relayed from a to b: %v", err)
		}
	}
	if got := testutil.ToFloat64(s.metrics.relayedBytes.WithLabelValues("to_peer")); got < 7 {
		t.Errorf("relayed bytes %v", got)
	}
}

func TestUserQuota(t *testing.T) {
	s, _ := start(t, func(c *Config) { c.UserQuota = 2 })
	user, pass := Credentials(testSecret, "alice", time.Now().Add(time.Hour))
	for i := range 2 {
		if _, _, err := allocate(t, s, user, pass); err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
	}
	if _, _, err := allocate(t, s, user, pass); err == nil {
		t.Fatal("a third allocation of one user went through")
	}
	bobUser, bobPass := Credentials(testSecret, "bob", time.Now().Add(time.Hour))
	if _, _, err := allocate(t, s, bobUser, bobPass); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if got := testutil.ToFloat64(s.metrics.refused.WithLabelValues("quota")); got != 1 {
		t.Errorf("refused %v, want 1", got)
	}
}

func TestConfigRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		adjust func(*Config)
		field  string // the field the error names first
	}{
		"no secret":    {func(c *Config) { c.Secret = "" }, "Secret"},
		"no relay ip":  {func(c *Config) { c.RelayIP = "" }, "RelayIP"},
		"any relay ip": {func(c *Config) { c.RelayIP = "0.0.0.0" }, "RelayIP"},
		"ports":        {func(c *Config) { c.PortMin, c.PortMax = 5000, 4000 }, "PortMin"},
		"cidr":         {func(c *Config) { c.AllowPeerCIDRs = []string{"10.0.0.0/33"} }, "AllowPeerCIDRs"},
		"tls half":     {func(c *Config) { c.TLSAddr = "127.0.0.1:0" }, "TLSAddr"},
		"no listener":  {func(c *Config) { c.UDPAddr, c.TCPAddr = "", "" }, "UDPAddr"},
		"no realm":     {func(c *Config) { c.Realm = "" }, "Realm"},
		"relay bind":   {func(c *Config) { c.RelayBind = "here" }, "RelayBind"},
	} {
		cfg := DefaultConfig()
		cfg.Secret, cfg.RelayIP = testSecret, "127.0.0.1"
		tc.adjust(&cfg)
		err := cfg.Validate()
		var fe *fielderr.Error
		switch {
		case err == nil:
			t.Errorf("%s: accepted", name)
		case !errors.As(err, &fe) || fe.Fields[0] != tc.field:
			t.Errorf("%s: %v does not name the field %s first", name, err, tc.field)
		case !strings.HasPrefix(err.Error(), tc.field):
			t.Errorf("%s: %q does not start with the field %s", name, err, tc.field)
		}
	}
}
