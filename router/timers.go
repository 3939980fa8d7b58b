package router

import (
	"encoding/json"
	"strings"
	"sync"
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
type ringTimers struct {
	fire func(id string)

	mu     sync.Mutex
	timers map[string]*time.Timer // call id → timer; guarded by mu
}

func newRingTimers(fire func(id string)) *ringTimers {
	return &ringTimers{fire: fire, timers: map[string]*time.Timer{}}
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
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, timer := range t.timers {
		if _, ok := ringing[id]; !ok && !timedOut[id] {
			timer.Stop()
			delete(t.timers, id)
		}
	}
	for id, deadline := range ringing {
		t.setLocked(id, deadline)
	}
}

// Update implements kvwatch.Handler.
func (t *ringTimers) Update(e kvwatch.Entry) {
	id, deadline, state := timedCall(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch state {
	case Ringing:
		t.setLocked(id, deadline)
		return
	case Ended:
		return // an armed timer repeats the no_answer
	}
	id = strings.TrimPrefix(e.Key, "call.")
	if timer, found := t.timers[id]; found {
		timer.Stop()
		delete(t.timers, id)
	}
}

// setLocked arms a timer for id unless one runs; guarded by mu.
func (t *ringTimers) setLocked(id string, deadline time.Time) {
	if _, ok := t.timers[id]; ok {
		return
	}
	t.timers[id] = time.AfterFunc(time.Until(deadline), func() {
		t.mu.Lock()
		delete(t.timers, id)
		t.mu.Unlock()
		t.fire(id)
	})
}

func (t *ringTimers) stopAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, timer := range t.timers {
		timer.Stop()
		delete(t.timers, id)
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
