package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/internal/kvwatch"
	"github.com/callmesh/callmesh/messages"
)

// Sentinel errors of the store.
var (
	// ErrConflict: the record changed since it was read; re-read and re-decide.
	ErrConflict = errors.New("router: revision conflict")
	// ErrExists: a record with that id already exists.
	ErrExists = errors.New("router: call exists")
)

// staleLockAge is how old a busy lock must be before a missing call record
// makes it stale. A read may be served by a replica that has not yet seen a
// record created just before the lock, so young locks are trusted.
const staleLockAge = 5 * time.Second

// Store keeps calls and busy locks in the calls bucket:
//
//	call.<call id>          Call (JSON); ended records expire after the retention
//	busy.<encoded user id>  the id of the call that holds the user busy
//
// Every write is a compare-and-set: Create fails if the key exists, Update
// names the revision it read. A busy lock is taken with a compare-and-set
// that expects no live lock (the view's revision of the lock's deletion,
// or Create), so two routers can never both hold a user for different
// calls.
type Store struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	retention time.Duration
	// view, when set, is the router's watched copy of the bucket (view.go):
	// a claim or a release that it knows the revision for takes one round
	// trip instead of two or three. Set before the store is used.
	view *view
}

// OpenStore creates or opens the calls bucket.
func OpenStore(ctx context.Context, js jetstream.JetStream, names messages.Names, replicas int, retention time.Duration) (*Store, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         names.CallsBucket(),
		Description:    "callmesh calls and busy locks",
		History:        1,
		Replicas:       replicas,
		LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("router: open calls bucket: %w", err)
	}
	return &Store{js: js, kv: kv, retention: retention.Round(time.Second)}, nil
}

// KV returns the underlying bucket (for watchers).
func (s *Store) KV() jetstream.KeyValue { return s.kv }

// get reads key from the copy from names; jetstream.ErrKeyNotFound if it
// has no value.
func (s *Store) get(ctx context.Context, key string, from kvutil.Read) (kvutil.Entry, error) {
	return kvutil.Get(ctx, s.js, s.kv, key, from)
}

// getRecord reads the JSON record under key (a call or a room, what names
// it in errors) as from has it, tells the view, and returns it with its
// revision, or nil if there is none.
func getRecord[T any](ctx context.Context, s *Store, key string, from kvutil.Read, what string) (*T, uint64, error) {
	e, err := s.get(ctx, key, from)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("router: get %s: %w", what, err)
	}
	v := new(T)
	if err := json.Unmarshal(e.Value, v); err != nil {
		return nil, 0, fmt.Errorf("router: decode %s: %w", what, err)
	}
	s.learn(key, e.Revision, e.Value)
	return v, e.Revision, nil
}

// Call returns the call and its revision as from has it, or nil if there
// is none.
func (s *Store) Call(ctx context.Context, id string, from kvutil.Read) (*Call, uint64, error) {
	return getRecord[Call](ctx, s, messages.CallKey(id), from, "call")
}

// learn tells the view what the store read or wrote: key held value at rev.
func (s *Store) learn(key string, rev uint64, value []byte) {
	if s.view != nil {
		s.view.learn(kvwatch.Entry{Key: key, Revision: rev, Value: value})
	}
}

// Create stores a new call; ErrExists if the id is taken.
func (s *Store) Create(ctx context.Context, c *Call) (uint64, error) {
	value := kvutil.MustJSON(c)
	rev, err := s.kv.Create(ctx, messages.CallKey(c.ID), value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("router: create call: %w", err)
	}
	s.learn(messages.CallKey(c.ID), rev, value)
	return rev, nil
}

// Update replaces the call stored at revision rev; ErrConflict if it moved.
// An ended call is written with a message TTL so it disappears after the
// retention period (KV Update would drop any TTL, so it is published with an
// expected last sequence instead).
func (s *Store) Update(ctx context.Context, c *Call, rev uint64) error {
	key, value := messages.CallKey(c.ID), kvutil.MustJSON(c)
	var err error
	var next uint64
	if c.State == Ended && s.retention > 0 {
		var ack *jetstream.PubAck
		ack, err = s.js.Publish(ctx, kvutil.Subject(s.kv, key), value,
			jetstream.WithMsgTTL(s.retention), jetstream.WithExpectLastSequencePerSubject(rev))
		if err == nil {
			next = ack.Sequence
		}
	} else {
		next, err = s.kv.Update(ctx, key, value, rev)
	}
	if kvutil.IsConflict(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("router: update call: %w", err)
	}
	s.learn(key, next, value)
	return nil
}

// Claim makes call the one holding user busy. It reports false if another
// live call (or a room) holds the user. A lock left by a call that has
// ended (or whose record is gone) is stale and is taken over.
func (s *Store) Claim(ctx context.Context, user, call string) (bool, error) {
	return s.ClaimLock(ctx, messages.BusyKey(user), user, call)
}

// ClaimLock makes call (a call id, or a room's key) the holder of user's
// lock under key (BusyKey or SeatKey); see Claim.
func (s *Store) ClaimLock(ctx context.Context, key, user, call string) (bool, error) {
	held := false // by another call, as far as the view knows: read it first
	if s.view != nil {
		// One compare-and-set on the revision the view knows the lock's
		// last message by (0: none), if that message freed it.
		holder, rev, known := s.view.lock(key)
		held = holder != "" && holder != call
		if !known || holder == "" {
			rev, err := s.kv.Update(ctx, key, []byte(call), rev)
			if err == nil {
				s.learn(key, rev, []byte(call))
				return true, nil
			}
			if !kvutil.IsConflict(err) {
				return false, fmt.Errorf("router: claim: %w", err)
			}
		}
	}
	for range 16 {
		if !held {
			rev, err := s.kv.Create(ctx, key, []byte(call))
			if err == nil {
				s.learn(key, rev, []byte(call))
				return true, nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return false, fmt.Errorf("router: claim: %w", err)
			}
		}
		held = false
		e, err := s.get(ctx, key, kvutil.Leader) // a refusal: the lock as written
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("router: read lock: %w", err)
		}
		s.learn(key, e.Revision, e.Value)
		holder := string(e.Value)
		if holder == call {
			return true, nil
		}
		stale, err := s.stale(ctx, user, holder, e.Created)
		if err != nil || !stale {
			return false, err
		}
		err = s.deleteLock(ctx, key, e.Revision)
		if err != nil && !kvutil.IsConflict(err) {
			return false, fmt.Errorf("router: clear stale lock: %w", err)
		}
	}
	return false, errors.New("router: claim kept conflicting")
}

// stale reports whether a lock of user held for call since created no
// longer stands for a live call, or for the room it names (a room's key):
// the room is gone or does not list the user. A router that died between
// claiming a lock for a join and writing the room leaves such a lock.
func (s *Store) stale(ctx context.Context, user, call string, created time.Time) (bool, error) {
	if isRoomKey(call) {
		r, _, err := s.RoomAt(ctx, call, kvutil.Leader)
		if err != nil {
			return false, err
		}
		if r != nil && r.userIn(user) >= 0 {
			return false, nil
		}
		return time.Since(created) > staleLockAge, nil
	}
	c, _, err := s.Call(ctx, call, kvutil.Leader)
	if err != nil {
		return false, err
	}
	if c == nil {
		return time.Since(created) > staleLockAge, nil
	}
	return c.State == Ended, nil
}

// Release drops user's lock if call holds it.
func (s *Store) Release(ctx context.Context, user, call string) error {
	return s.ReleaseLock(ctx, messages.BusyKey(user), call)
}

// ReleaseLock drops the lock under key if call (a call id or a room's key)
// holds it.
func (s *Store) ReleaseLock(ctx context.Context, key, call string) error {
	if s.view != nil {
		// One compare-and-set delete, if the view knows call holds it.
		if holder, rev, _ := s.view.lock(key); holder == call {
			err := s.deleteLock(ctx, key, rev)
			if err == nil {
				return nil
			}
			if !kvutil.IsConflict(err) {
				return fmt.Errorf("router: release lock: %w", err)
			}
		}
	}
	e, err := s.get(ctx, key, kvutil.Leader) // "not held by call" leaves it: be sure
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("router: read lock: %w", err)
	}
	if string(e.Value) != call {
		return nil
	}
	err = s.deleteLock(ctx, key, e.Revision)
	if err != nil && !kvutil.IsConflict(err) {
		return fmt.Errorf("router: release lock: %w", err)
	}
	return nil
}

// deleteLock deletes key if its last revision is rev, as KV Delete with
// LastRevision does, and tells the view the revision of the deletion, so
// that the next claim of the lock takes one round trip.
func (s *Store) deleteLock(ctx context.Context, key string, rev uint64) error {
	m := nats.NewMsg(kvutil.Subject(s.kv, key))
	m.Header.Set(kvOperation, kvOperationDelete)
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		return err
	}
	if s.view != nil {
		s.view.learn(kvwatch.Entry{Key: key, Revision: ack.Sequence, Deleted: true})
	}
	return nil
}

// The header that marks a KV deletion (as jetstream.KeyValue.Delete writes it).
const (
	kvOperation       = "KV-Operation"
	kvOperationDelete = "DEL"
)

// BusyCall returns what holds user busy as from has it: a call id, a
// room's key (isRoomKey), or "".
func (s *Store) BusyCall(ctx context.Context, user string, from kvutil.Read) (string, error) {
	return s.Holder(ctx, messages.BusyKey(user), from)
}

// Holder returns what holds the lock under key as from has it, or "".
func (s *Store) Holder(ctx context.Context, key string, from kvutil.Read) (string, error) {
	e, err := s.get(ctx, key, from)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("router: read lock: %w", err)
	}
	return string(e.Value), nil
}
