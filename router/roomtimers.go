package router

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/callmesh/callmesh/internal/kvwatch"
)

// roomTimers holds a timer for every empty room in the bucket, whichever
// router emptied it, so a room ends rooms.empty_timeout after its last
// member left even if that router has died. Like the ring timers, every
// router fires every timer, and the compare-and-set of the deletion lets
// one of them end the room (RoomExpire); a join in between stops it.
type roomTimers struct {
	fire func(id string)

	mu     sync.Mutex
	timers map[string]*time.Timer // room id → timer; guarded by mu
}

func newRoomTimers(fire func(id string)) *roomTimers {
	return &roomTimers{fire: fire, timers: map[string]*time.Timer{}}
}

// emptyRoom returns the id of the room record e holds and when it is due
// to end; ok is false unless it is an empty room.
func emptyRoom(e kvwatch.Entry) (id string, due time.Time, ok bool) {
	id, _ = roomIDOf(e.Key)
	var r Room
	if e.Deleted || json.Unmarshal(e.Value, &r) != nil || len(r.Members) > 0 || r.EmptySince == 0 {
		return id, time.Time{}, false
	}
	return id, time.UnixMilli(r.EmptySince + r.EmptyTimeout), true
}

// Sync implements kvwatch.Handler, for the room records.
func (t *roomTimers) Sync(entries map[string]kvwatch.Entry) {
	empty := map[string]time.Time{}
	for k, e := range entries {
		if !strings.HasPrefix(k, "room.") {
			continue
		}
		if id, due, ok := emptyRoom(e); ok {
			empty[id] = due
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, timer := range t.timers {
		if _, ok := empty[id]; !ok {
			timer.Stop()
			delete(t.timers, id)
		}
	}
	for id, due := range empty {
		t.setLocked(id, due)
	}
}

// Update implements kvwatch.Handler, for a room record.
func (t *roomTimers) Update(e kvwatch.Entry) {
	id, due, ok := emptyRoom(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !ok {
		if timer := t.timers[id]; timer != nil {
			timer.Stop()
			delete(t.timers, id)
		}
		return
	}
	t.setLocked(id, due)
}

// setLocked arms room id's timer for due. Guarded by mu.
func (t *roomTimers) setLocked(id string, due time.Time) {
	if timer := t.timers[id]; timer != nil {
		timer.Stop()
	}
	t.timers[id] = time.AfterFunc(time.Until(due), func() {
		t.mu.Lock()
		delete(t.timers, id)
		t.mu.Unlock()
		t.fire(id)
	})
}

func (t *roomTimers) stopAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, timer := range t.timers {
		timer.Stop()
		delete(t.timers, id)
	}
}
