package fielderr

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

var errKind = errors.New("pkg: config")

func TestError(t *testing.T) {
	e := New("must be positive", "Heartbeat")
	if got := e.Error(); got != "Heartbeat: must be positive" {
		t.Errorf("Error() = %q", got)
	}
	k := New("set exactly one (0 set)", "Secret", "KeyFile").Of(errKind)
	if got := k.Error(); got != "pkg: config: Secret, KeyFile: set exactly one (0 set)" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(k, errKind) {
		t.Error("not errors.Is its Kind")
	}
}

// TestRewrite: every Error in a tree of errors.Join lists and %w wrappers
// is rendered, the wrappers' context kept; other errors are left alone.
func TestRewrite(t *testing.T) {
	render := func(e *Error) error { return errors.New(strings.ToLower(strings.Join(e.Fields, "+")) + " " + e.Reason) }
	other := errors.New("disk full")
	err := errors.Join(
		New("must be positive", "RingTimeout"),
		fmt.Errorf("dev tokens: %w", New("needs a secret", "Secret").Of(errKind)),
		other,
		errors.Join(New("must be 1 to 5", "Replicas")),
	)
	got := Rewrite(err, render)
	want := "ringtimeout must be positive\ndev tokens: secret needs a secret\ndisk full\nreplicas must be 1 to 5"
	if got.Error() != want {
		t.Errorf("Rewrite =\n%s\nwant\n%s", got, want)
	}
	if !errors.Is(got, other) {
		t.Error("the error that is no Error is lost")
	}
	if Rewrite(other, render) != other || Rewrite(nil, render) != nil {
		t.Error("Rewrite changed an error without Errors")
	}
	// A wrapper whose text does not end with the wrapped error's is kept
	// whole: its context cannot be told apart.
	odd := fmt.Errorf("%w (while starting)", New("must be set", "Realm"))
	if Rewrite(odd, render) != odd {
		t.Error("Rewrite took apart a wrapper it cannot read")
	}
}
