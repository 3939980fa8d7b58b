package messages

import "testing"

func TestResumeTokenRoundTrip(t *testing.T) {
	token, hash := NewResumeToken("conn_1")
	conn, secret, ok := ParseResumeToken(token)
	if !ok || conn != "conn_1" || !SameHash(HashResumeSecret(secret), hash) {
		t.Fatalf("parse %q = %q, %q, %v", token, conn, secret, ok)
	}
	if SameHash(HashResumeSecret(secret+"x"), hash) {
		t.Fatal("another secret has the same hash")
	}
}

func TestParseResumeTokenRefusesMalformed(t *testing.T) {
	for _, token := range []string{"", "abc", ".abc", "abc.", "a.b.c", "a b.c", "a.b\n", "ä.b"} {
		if _, _, ok := ParseResumeToken(token); ok {
			t.Errorf("ParseResumeToken(%q) accepted", token)
		}
	}
}
