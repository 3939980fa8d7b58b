package router

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
)

// Room records live in the calls bucket under messages.RoomKey, next to the
// calls and the locks (docs/rooms.md). Like a call, a room is written only
// with compare-and-set on the revision it was read at.

// isRoomKey reports whether a lock's holder is a room (its record's key)
// rather than a call id; call ids have no dot.
func isRoomKey(holder string) bool { return strings.HasPrefix(holder, "room.") }

// RoomAt returns the room stored under key (messages.RoomKey) and its
// revision as from has it, or nil if there is none.
func (s *Store) RoomAt(ctx context.Context, key string, from kvutil.Read) (*Room, uint64, error) {
	return getRecord[Room](ctx, s, key, from, "room")
}

// PutRoom stores r: a new record when rev is 0 (ErrConflict if one exists
// by now), else a compare-and-set on revision rev.
func (s *Store) PutRoom(ctx context.Context, r *Room, rev uint64) error {
	key, value := messages.RoomKey(r.ID), kvutil.MustJSON(r)
	var next uint64
	var err error
	if rev == 0 {
		next, err = s.kv.Create(ctx, key, value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrConflict
		}
	} else {
		next, err = s.kv.Update(ctx, key, value, rev)
	}
	if kvutil.IsConflict(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("router: write room: %w", err)
	}
	s.learn(key, next, value)
	return nil
}

// DeleteRoom deletes room id if its record is still at revision rev.
func (s *Store) DeleteRoom(ctx context.Context, id string, rev uint64) error {
	err := s.deleteLock(ctx, messages.RoomKey(id), rev)
	if kvutil.IsConflict(err) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("router: delete room: %w", err)
	}
	return nil
}

// SwapLock moves the lock under key from holder from to holder to in one
// compare-and-set, so that its user is never free in between (a room ring
// answered, a call moved into a room). It reports false if from no longer
// holds it.
func (s *Store) SwapLock(ctx context.Context, key, from, to string) (bool, error) {
	for range casAttempts {
		e, err := s.get(ctx, key, kvutil.Leader) // false leaves the user as it was: be sure
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("router: read lock: %w", err)
		}
		switch string(e.Value) {
		case to:
			return true, nil
		case from:
		default:
			return false, nil
		}
		rev, err := s.kv.Update(ctx, key, []byte(to), e.Revision)
		if err == nil {
			s.learn(key, rev, []byte(to))
			return true, nil
		}
		if !kvutil.IsConflict(err) {
			return false, fmt.Errorf("router: swap lock: %w", err)
		}
	}
	return false, errConflicts
}
