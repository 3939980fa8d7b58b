package router

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/callmesh/callmesh/internal/kvwatch"
)

// ringTimers holds a timer for every ringing call in the bucket, whichever
// router created it, so a ring timeout fires even if that router has died.
// Every router fires every timer; the compare-and-set in transition lets
// exactly one of them end the call. A timer stays armed when the call ends
// with no_answer before it fires (another router's clock ran ahead): its
// Expire repeats the ending's effects in case that router died before
// publishing them (repeat.go).
type ringTimers struct{ deadlines }

func newRingTimers(fire func(id string)) *ringTimers {
	return &ringTimers{deadlines{fire: fire}}
}

// Sync implements kvwatch.Handler.
func (t *ringTimers) Sync(entries map[string]kvwatch.Entry) {
	ringing := map[string]time.Time{}
	timedOut := map[string]bool{}
	for _, e := range entries {
		id, deadline, state := timedCall(e)
		switch state {
		case Ringing:
			ringing[id] = deadline
		case Ended:
			timedOut[id] = true
		}
	}
	t.keepOnly(func(id string) bool { _, ok := ringing[id]; return ok || timedOut[id] })
	for id, deadline := range ringing {
		t.set(id, deadline)
	}
}

// Update implements kvwatch.Handler.
func (t *ringTimers) Update(e kvwatch.Entry) {
	switch id, deadline, state := timedCall(e); state {
	case Ringing:
		t.set(id, deadline)
	case Ended: // an armed timer repeats the no_answer
	default:
		t.drop(strings.TrimPrefix(e.Key, "call."))
	}
}

// timedCall decodes e: state is Ringing for a ringing call, Ended for a
// call that a ring timeout ended, "" for anything else.
func timedCall(e kvwatch.Entry) (id string, deadline time.Time, state State) {
	if e.Deleted {
		return "", time.Time{}, ""
	}
	var c Call
	if json.Unmarshal(e.Value, &c) != nil {
		return "", time.Time{}, ""
	}
	switch {
	case c.State == Ringing:
		return c.ID, c.ringDeadline(), Ringing
	case c.State == Ended && c.EndedBy != nil && c.EndedBy.Kind == Expire:
		return c.ID, c.ringDeadline(), Ended
	}
	return "", time.Time{}, ""
}
