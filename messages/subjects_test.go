package messages

import (
	"regexp"
	"strings"
	"testing"
)

var (
	// subjectToken is what a user token may hold: no NATS wildcard ('*', '>'),
	// separator ('.') or whitespace, nothing that needs quoting anywhere.
	subjectToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// kvKey is the character set JetStream accepts in KV keys.
	kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	// bucketName is the character set JetStream accepts in bucket names.
	bucketName = regexp.MustCompile(`^[-_a-zA-Z0-9]+$`)
)

func TestNewNames(t *testing.T) {
	for _, p := range []string{DefaultPrefix, "a", "Z", "0", "cm-prod_eu1", strings.Repeat("p", 32), "-", "_"} {
		n, err := NewNames(p)
		if err != nil {
			t.Errorf("NewNames(%q): %v", p, err)
			continue
		}
		if n.Prefix() != p {
			t.Errorf("Prefix() = %q, want %q", n.Prefix(), p)
		}
		checkNames(t, n)
	}
	for _, p := range []string{
		"", strings.Repeat("p", 33), "a.b", ".", "a.", "*", "a*", ">", "a>", "a b", " ", "a\tb",
		"ñ", "a/b", "a=b", "a\x00", "$SYS", "a\n",
	} {
		if n, err := NewNames(p); err == nil {
			t.Errorf("NewNames(%q) = %v, want an error", p, n)
		}
	}
}

// checkNames asserts every name built from n is legal where it is used.
func checkNames(t *testing.T, n Names) {
	t.Helper()
	p := n.Prefix()
	checkSubject(t, n.RouterSubject(), 2)
	if got := n.RouterSubject(); !strings.HasPrefix(got, p+".") {
		t.Errorf("RouterSubject() = %q, not under %q", got, p)
	}
	if q := n.RouterQueue(); !subjectToken.MatchString(q) || !strings.HasPrefix(q, p) {
		t.Errorf("RouterQueue() = %q", q)
	}
	calls, presence := n.CallsBucket(), n.PresenceBucket()
	for _, b := range []string{calls, presence} {
		if !bucketName.MatchString(b) || !strings.HasPrefix(b, p) {
			t.Errorf("bucket name %q is not legal or not under %q", b, p)
		}
	}
	if calls == presence {
		t.Errorf("CallsBucket() == PresenceBucket() == %q", calls)
	}
	us := n.UserSubject("alice")
	if !strings.HasPrefix(us, p+".") {
		t.Errorf("UserSubject = %q, not under %q", us, p)
	}
	if us == n.RouterSubject() {
		t.Errorf("UserSubject collides with RouterSubject: %q", us)
	}
}

// checkSubject asserts s is a literal NATS subject of exactly n tokens.
func checkSubject(t testing.TB, s string, n int) {
	t.Helper()
	toks := strings.Split(s, ".")
	if len(toks) != n {
		t.Errorf("subject %q has %d tokens, want %d", s, len(toks), n)
		return
	}
	for _, tok := range toks {
		if !subjectToken.MatchString(tok) {
			t.Errorf("subject %q: token %q is not [A-Za-z0-9_-]+", s, tok)
		}
	}
}

// checkKey asserts k is a legal JetStream KV key with no empty segment.
func checkKey(t testing.TB, k string) {
	t.Helper()
	if !kvKey.MatchString(k) {
		t.Errorf("KV key %q has characters outside [-/_=.a-zA-Z0-9]", k)
	}
	for _, seg := range strings.Split(k, ".") {
		if seg == "" {
			t.Errorf("KV key %q has an empty segment", k)
		}
	}
}

// userIDs are the awkward user ids every builder must survive.
var userIDs = []string{
	"alice", "a.b", "*", ">", "a.*.>", "alice@example.com", "ñandú", "a b", " ", "\t\n",
	"", "a/b", "a=b", "$SYS.x", "日本語", "😀", "\x00", "a\x00b", "\xff\xfe",
	"550e8400-e29b-41d4-a716-446655440000", "YQ", "YQ==",
	strings.Repeat("x", 256), strings.Repeat("ñ", 128), strings.Repeat(".", 256),
}

func TestEncodeUserIDRoundTrip(t *testing.T) {
	for _, u := range userIDs {
		tok := EncodeUserID(u)
		got, err := DecodeUserID(tok)
		if err != nil {
			t.Errorf("DecodeUserID(EncodeUserID(%q) = %q): %v", u, tok, err)
			continue
		}
		if got != u {
			t.Errorf("DecodeUserID(EncodeUserID(%q)) = %q", u, got)
		}
	}
}

func TestDecodeUserIDRefusesGarbage(t *testing.T) {
	for _, tok := range []string{"a", "a.b", "*", ">", "a b", "YQ==", "Y+Q", "Y/Q", "é"} {
		if u, err := DecodeUserID(tok); err == nil {
			t.Errorf("DecodeUserID(%q) = %q, want an error", tok, u)
		}
	}
}

func TestUserSubjectsAndKeys(t *testing.T) {
	n, err := NewNames(DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]string{}
	busy := map[string]string{}
	users := map[string]string{}
	for _, u := range userIDs {
		t.Run(strings.ToValidUTF8(u[:min(len(u), 16)], "?"), func(t *testing.T) {
			if u == "" && EncodeUserID(u) == "" {
				t.Fatalf(`EncodeUserID("") is "", so UserSubject("") = %q ends in '.' and BusyKey("") = %q has an empty segment`,
					n.UserSubject(u), BusyKey(u))
			}
			s := n.UserSubject(u)
			checkSubject(t, s, 3)
			if !strings.HasPrefix(s, DefaultPrefix+".user.") {
				t.Errorf("UserSubject(%q) = %q", u, s)
			}
			checkKey(t, BusyKey(u))
			checkKey(t, UserKey(u))
		})
		distinct(t, subjects, n.UserSubject(u), u)
		distinct(t, busy, BusyKey(u), u)
		distinct(t, users, UserKey(u), u)
	}
	// Busy locks and call records share a bucket; presence users and
	// gateways share another. No user id may land on the other kind's key.
	for _, u := range userIDs {
		if strings.HasPrefix(BusyKey(u), "call.") || strings.HasPrefix(UserKey(u), "gw.") {
			t.Errorf("user %q collides with another key kind", u)
		}
	}
}

// distinct records that name belongs to user and fails if another user has it.
func distinct(t testing.TB, seen map[string]string, name, user string) {
	t.Helper()
	if prev, dup := seen[name]; dup {
		t.Errorf("users %q and %q share %q", prev, user, name)
	}
	seen[name] = user
}

func TestCallAndGatewayKeys(t *testing.T) {
	for range 100 {
		id := NewID()
		checkKey(t, CallKey(id))
		checkKey(t, GatewayKey(NewGatewayID("gateway-1")))
	}
	// Every valid call id is a legal key.
	for _, id := range []string{"-", "_", "a", strings.Repeat("Zz9-_", 12) + "abcd"} {
		if !ValidCallID(id) {
			t.Fatalf("ValidCallID(%q) = false", id)
		}
		checkKey(t, CallKey(id))
	}
}

// A gateway's subjects all lie under its root, which one NATS permission
// (<prefix>.gw.<name>.>) grants; another gateway's never do.
func TestGatewaySubjectsShareTheirRoot(t *testing.T) {
	n, err := NewNames("cm")
	if err != nil {
		t.Fatal(err)
	}
	id := NewGatewayID("gateway-1")
	other := NewGatewayID("gateway-10")
	for _, s := range []string{n.GatewaySubject(id), n.DeliverSubject(id), n.GatewayInbox(id)} {
		if !strings.HasPrefix(s, "cm.gw.gateway-1.") {
			t.Errorf("%q is not under cm.gw.gateway-1.", s)
		}
	}
	for _, s := range []string{n.GatewaySubject(other), n.DeliverSubject(other), n.GatewayInbox(other)} {
		if strings.HasPrefix(s, "cm.gw.gateway-1.") {
			t.Errorf("%q is under cm.gw.gateway-1.", s)
		}
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b", strings.Repeat("a", 65)} {
		if ValidGatewayName(bad) == nil {
			t.Errorf("ValidGatewayName(%q) = nil", bad)
		}
	}
	if err := ValidGatewayName("gateway-1"); err != nil {
		t.Error(err)
	}
}
