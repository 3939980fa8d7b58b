// Package fielderr is the error a component returns when its config is
// wrong: which fields, and why. The component names its Go fields
// ("HeartbeatTTL"); a program that sets them from other names renders the
// same error with its own, as cmd/callmesh does with its configuration
// keys and where each value came from. So a rule is written once, in the
// component's Validate, and both audiences get an error in their terms.
package fielderr

import (
	"errors"
	"strings"
)

// Error is a problem with one or more fields of a config struct.
type Error struct {
	// Fields are the paths of the fields the problem is about, within the
	// struct that was validated ("HeartbeatTTL", "Rooms.MaxMembers"); the
	// one to change first comes first.
	Fields []string
	// Reason says what is wrong without naming the fields ("must be at
	// least 1s and longer than the heartbeat"): it reads after them.
	Reason string
	// Kind, when set, is a sentinel of the component the error matches
	// with errors.Is, and whose text prefixes Error's.
	Kind error
}

// New is an Error about fields, with reason.
func New(reason string, fields ...string) *Error {
	return &Error{Fields: fields, Reason: reason}
}

// Of sets e's Kind and returns e.
func (e *Error) Of(kind error) *Error {
	e.Kind = kind
	return e
}

// Error is "[kind: ]Field, Field: reason".
func (e *Error) Error() string {
	s := strings.Join(e.Fields, ", ") + ": " + e.Reason
	if e.Kind != nil {
		s = e.Kind.Error() + ": " + s
	}
	return s
}

// Unwrap is Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Rewrite returns err with every Error in it replaced by render's result
// for it. It looks through errors.Join lists and through wrappers whose
// text ends with the wrapped error's (fmt.Errorf("context: %w", err)),
// keeping their context: "dev tokens: " + render(e). Anything else is
// returned as it is.
func Rewrite(err error, render func(*Error) error) error {
	switch x := err.(type) {
	case nil:
		return nil
	case *Error:
		return render(x)
	case interface{ Unwrap() []error }:
		errs := x.Unwrap()
		texts := make([]string, len(errs))
		for i, e := range errs {
			texts[i] = e.Error()
		}
		if err.Error() != strings.Join(texts, "\n") { // not an errors.Join
			return err
		}
		out := make([]error, len(errs))
		changed := false
		for i, e := range errs {
			out[i] = Rewrite(e, render)
			changed = changed || out[i] != e
		}
		if !changed {
			return err
		}
		return errors.Join(out...)
	case interface{ Unwrap() error }:
		inner := x.Unwrap()
		context, ok := strings.CutSuffix(err.Error(), inner.Error())
		if !ok {
			return err
		}
		r := Rewrite(inner, render)
		if r == inner {
			return err
		}
		return &wrapped{context: context, err: r}
	}
	return err
}

// wrapped is a context kept by Rewrite around a rendered error.
type wrapped struct {
	context string
	err     error
}

func (w *wrapped) Error() string { return w.context + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
