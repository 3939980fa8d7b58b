package router

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/callmesh/callmesh/internal/kvwatch"
)

// roomTimers holds a timer for every empty room in the bucket, whichever
// router emptied it, so a room ends rooms.empty_timeout after its last
// member left even if that router has died. Like the ring timers, every
// router fires every timer, and the compare-and-set of the deletion lets
// one of them end the room (RoomExpire); a join in between stops it.
type roomTimers struct{ deadlines }

func newRoomTimers(fire func(id string)) *roomTimers {
	return &roomTimers{deadlines{fire: fire}}
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
	t.keepOnly(func(id string) bool { _, ok := empty[id]; return ok })
	for id, due := range empty {
		t.set(id, due)
	}
}

// Update implements kvwatch.Handler, for a room record: a room that is
// empty is due to end, one that is not (or is gone) is not.
func (t *roomTimers) Update(e kvwatch.Entry) {
	if id, due, ok := emptyRoom(e); ok {
		t.set(id, due)
	} else {
		t.drop(id)
	}
}
