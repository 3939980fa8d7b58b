package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/kvutil"
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
// names the revision it read. A busy lock is taken with Create, so two
// routers can never both hold a user for different calls.
type Store struct {
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	retention time.Duration
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

// Call returns the call and its revision, or nil if there is none.
func (s *Store) Call(ctx context.Context, id string) (*Call, uint64, error) {
	e, err := s.kv.Get(ctx, messages.CallKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("router: get call: %w", err)
	}
	var c Call
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return nil, 0, fmt.Errorf("router: decode call: %w", err)
	}
	return &c, e.Revision(), nil
}

// Create stores a new call; ErrExists if the id is taken.
func (s *Store) Create(ctx context.Context, c *Call) (uint64, error) {
	rev, err := s.kv.Create(ctx, messages.CallKey(c.ID), kvutil.MustJSON(c))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("router: create call: %w", err)
	}
	return rev, nil
}

// Update replaces the call stored at revision rev; ErrConflict if it moved.
// An ended call is written with a message TTL so it disappears after the
// retention period (KV Update would drop any TTL, so it is published with an
// expected last sequence instead).
func (s *Store) Update(ctx context.Context, c *Call, rev uint64) error {
	var err error
	if c.State == Ended && s.retention > 0 {
		_, err = s.js.Publish(ctx, kvutil.Subject(s.kv, messages.CallKey(c.ID)), kvutil.MustJSON(c),
			jetstream.WithMsgTTL(s.retention), jetstream.WithExpectLastSequencePerSubject(rev))
	} else {
		_, err = s.kv.Update(ctx, messages.CallKey(c.ID), kvutil.MustJSON(c), rev)
	}
	if kvutil.IsConflict(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("router: update call: %w", err)
	}
	return nil
}

// Claim makes call the one holding user busy. It reports false if another
// live call holds the user. A lock left by a call that has ended (or whose
// record is gone) is stale and is taken over.
func (s *Store) Claim(ctx context.Context, user, call string) (bool, error) {
	key := messages.BusyKey(user)
	for range 16 {
		_, err := s.kv.Create(ctx, key, []byte(call))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("router: claim: %w", err)
		}
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("router: read lock: %w", err)
		}
		holder := string(e.Value())
		if holder == call {
			return true, nil
		}
		stale, err := s.stale(ctx, holder, e.Created())
		if err != nil || !stale {
			return false, err
		}
		err = s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		if err != nil && !kvutil.IsConflict(err) {
			return false, fmt.Errorf("router: clear stale lock: %w", err)
		}
	}
	return false, errors.New("router: claim kept conflicting")
}

// stale reports whether a lock held for call since created no longer stands
// for a live call.
func (s *Store) stale(ctx context.Context, call string, created time.Time) (bool, error) {
	c, _, err := s.Call(ctx, call)
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
	key := messages.BusyKey(user)
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("router: read lock: %w", err)
	}
	if string(e.Value()) != call {
		return nil
	}
	err = s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !kvutil.IsConflict(err) {
		return fmt.Errorf("router: release lock: %w", err)
	}
	return nil
}

// BusyCall returns the id of the call holding user busy, or "".
func (s *Store) BusyCall(ctx context.Context, user string) (string, error) {
	e, err := s.kv.Get(ctx, messages.BusyKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("router: read lock: %w", err)
	}
	return string(e.Value()), nil
}
