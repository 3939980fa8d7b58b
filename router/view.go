package router

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/callmesh/callmesh/internal/kvwatch"
	"github.com/callmesh/callmesh/messages"
)

// view is a router's copy of the calls bucket, kept by a watcher: for each
// key, the revision and value of its last message (a busy lock's deletion
// included). It saves KV reads, never decides alone: a revision names one
// message of the stream, which never changes, so what the view knows of it
// is true; but the key may have moved on since. Every write made from the
// view is a compare-and-set on the revision it names, and a conflict sends
// the caller to the KV for the current value. Decisions that write nothing
// are made on the leader's copy (transition, kvutil.Read).
//
// A resync forgets deleted keys (kvwatch hands over live keys only), so
// the view holds the deletions of one resync period at most: the claim of
// a lock released longer ago than that costs three round trips (a failed
// create, a read, a write), as it did without the view. (Deletion markers
// with a TTL would make that one; not done yet.)
type view struct {
	next  kvwatch.Handler // the ring timers, fed the call records
	rooms kvwatch.Handler // the room timers, fed the room records

	mu   sync.Mutex
	keys map[string]viewEntry // guarded by mu
}

type viewEntry struct {
	rev     uint64
	value   []byte
	deleted bool
}

func newView(next, rooms kvwatch.Handler) *view {
	return &view{next: next, rooms: rooms, keys: map[string]viewEntry{}}
}

// Sync implements kvwatch.Handler.
func (v *view) Sync(entries map[string]kvwatch.Entry) {
	keys := make(map[string]viewEntry, len(entries))
	calls := make(map[string]kvwatch.Entry, len(entries))
	for k, e := range entries {
		keys[k] = viewEntry{rev: e.Revision, value: e.Value}
		if strings.HasPrefix(k, "call.") {
			calls[k] = e
		}
	}
	v.mu.Lock()
	for k, cur := range v.keys { // learnt since the watcher's snapshot
		if e, ok := keys[k]; cur.rev > e.rev && (ok || !cur.deleted && !strings.HasPrefix(k, "call.")) {
			keys[k] = cur
		}
	}
	v.keys = keys
	v.mu.Unlock()
	v.next.Sync(calls)
	v.rooms.Sync(entries)
}

// Update implements kvwatch.Handler.
func (v *view) Update(e kvwatch.Entry) {
	v.learn(e)
	switch {
	case strings.HasPrefix(e.Key, "call."):
		v.next.Update(e)
	case strings.HasPrefix(e.Key, "room."):
		v.rooms.Update(e)
	}
}

// learn records e unless the view knows a later message of its key: the
// router's own reads and writes are learnt before the watcher brings them.
//
// It keeps no ended call: a decision on one writes nothing, so transition
// reads it from the KV anyway, and they are many (call.ended_retention).
// It keeps released locks, which is what makes the next claim cheap.
func (v *view) learn(e kvwatch.Entry) {
	forget := strings.HasPrefix(e.Key, "call.") && (e.Deleted || endedRecord(e.Value))
	v.mu.Lock()
	defer v.mu.Unlock()
	cur, ok := v.keys[e.Key]
	switch {
	case ok && cur.rev >= e.Revision:
	case forget:
		delete(v.keys, e.Key)
	default:
		v.keys[e.Key] = viewEntry{rev: e.Revision, value: e.Value, deleted: e.Deleted}
	}
}

// endedRecord reports whether a call record is ended (or undecodable).
func endedRecord(record []byte) bool {
	var c struct {
		State State `json:"state"`
	}
	return json.Unmarshal(record, &c) != nil || c.State == Ended
}

func (v *view) get(key string) (viewEntry, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.keys[key]
	return e, ok
}

// call returns call id as the view last saw it, and its revision; nil if
// the view does not know it (or it was deleted).
func (v *view) call(id string) (*Call, uint64) {
	e, ok := v.get(messages.CallKey(id))
	if !ok || e.deleted {
		return nil, 0
	}
	var c Call
	if json.Unmarshal(e.value, &c) != nil {
		return nil, 0
	}
	return &c, e.rev
}

// lock returns the lock under key (a busy or seat lock) as the view last
// saw it: what holds it ("" when released) and its revision; known is false
// when the view has no entry for it.
func (v *view) lock(key string) (holder string, rev uint64, known bool) {
	e, ok := v.get(key)
	if !ok {
		return "", 0, false
	}
	if e.deleted {
		return "", e.rev, true
	}
	return string(e.value), e.rev, true
}
