package messages

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewID(t *testing.T) {
	seen := make(map[string]bool, 1000)
	for range 1000 {
		id := NewID()
		if len(id) != 22 {
			t.Fatalf("NewID() = %q, %d chars, want 22", id, len(id))
		}
		if !ValidCallID(id) {
			t.Fatalf("ValidCallID(%q) = false", id)
		}
		if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 16 {
			t.Fatalf("NewID() = %q does not hold 128 bits: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidUserID(t *testing.T) {
	for _, id := range []string{"a", "alice@example.com", "a.b.*.>", "zoë 李", "😀", strings.Repeat("a", MaxUserIDLen)} {
		if err := ValidUserID(id); err != nil {
			t.Errorf("ValidUserID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{
		"", strings.Repeat("a", MaxUserIDLen+1), "bob\xff",
		"\ufffdx", "x\ufffd", // what JSON decoding makes of "\ud800x", "x\udc00" or "x\xff"
	} {
		if err := ValidUserID(id); err == nil {
			t.Errorf("ValidUserID(%q) = nil, want an error", id)
		}
	}
}
