// Package presence records which connections each user has and which gateway
// holds them, in a JetStream KV bucket, and notices dead gateways.
//
// Keys (see messages.UserKey, messages.GatewayKey):
//
//	user.<encoded user id>  {"conns":{"<conn id>":{"gw":"<gateway id>","rh":"<resume hash>"}}}
//	gw.<gateway id>         heartbeat, with a per-key TTL
//
// A user's connection set is changed only with compare-and-set on its
// revision, so gateways on different machines never lose each other's
// updates. A gateway's heartbeat key expires when it stops refreshing it;
// Monitor then evicts the gateway's connections after the resume grace.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
)

// ErrTooManyConns is RegisterLimited's refusal: the user has as many
// connections as the limit allows.
var ErrTooManyConns = errors.New("presence: too many connections for this user")

// Registry reads and writes the presence bucket. It is safe for concurrent use.
type Registry struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
}

// Conn is where one connection of a user lives: its gateway, the hash of
// the secret that resumes it (messages.NewResumeToken), and which socket on
// that gateway holds it now (a resume changes the holder, even on the same
// gateway).
type Conn struct {
	Gateway string `json:"gw"`
	Resume  string `json:"rh,omitempty"`
	Holder  string `json:"h,omitempty"`
}

// matches reports whether c is at: every field set in at must be equal.
func (c Conn) matches(at Conn) bool {
	return (at.Gateway == "" || c.Gateway == at.Gateway) &&
		(at.Holder == "" || c.Holder == at.Holder) &&
		(at.Resume == "" || messages.SameHash(c.Resume, at.Resume))
}

type userRecord struct {
	Conns map[string]Conn `json:"conns"`
}

// Open creates or opens the presence bucket with the given replica count.
//
// Gateways write to this bucket, so it is hardened against a compromised
// one: it refuses roll-ups (a publish with the header Nats-Rollup: all to
// any key would wipe every key, heartbeats included) and purges. JetStream
// allows no roll-up in a stream with delete markers, so a heartbeat whose
// TTL runs out leaves no marker: Monitor notices it by reading the key.
// The stream is the one CreateKeyValue would make, otherwise.
func Open(ctx context.Context, js jetstream.JetStream, names messages.Names, replicas int) (*Registry, error) {
	bucket := names.PresenceBucket()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              "KV_" + bucket,
		Description:       "callmesh presence: connections per user, gateway heartbeats",
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Discard:           jetstream.DiscardNew,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		DenyDelete:        true,
		DenyPurge:         true,
		AllowRollup:       false,
		AllowMsgTTL:       true, // heartbeats expire
	})
	if err != nil {
		return nil, fmt.Errorf("presence: open bucket: %w", err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("presence: open bucket: %w", err)
	}
	return &Registry{js: js, kv: kv}, nil
}

// Bind opens the presence bucket without creating or changing it, waiting
// until a router has created it and JetStream answers, or ctx is done: a
// gateway started before the routers, or with a cluster that is still
// electing leaders, waits for them (kvutil.Retry, logging through the
// default logger). Gateways bind: the permission to update a stream would
// let a compromised gateway reconfigure it (deploy/nats-auth.conf).
func Bind(ctx context.Context, js jetstream.JetStream, names messages.Names) (*Registry, error) {
	var kv jetstream.KeyValue
	err := kvutil.Retry(ctx, slog.Default(), "bind presence bucket", func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, names.PresenceBucket())
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bucket %s does not exist (start a router): %w", names.PresenceBucket(), err)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	return &Registry{js: js, kv: kv}, nil
}

// KV returns the underlying bucket (for watchers).
func (r *Registry) KV() jetstream.KeyValue { return r.kv }

// Register records conn of user as held at, whatever the user's number of
// connections (for a connection that was counted already).
func (r *Registry) Register(ctx context.Context, user, conn string, at Conn) error {
	return r.RegisterLimited(ctx, user, conn, at, 0)
}

// RegisterLimited records conn of user as held at, unless the user already
// has max other connections (those being evicted not counted): then it
// returns ErrTooManyConns. The count is checked in the compare-and-set of
// the write, so simultaneous registers on any number of gateways never
// exceed max. A connection already registered (a retry) is never refused.
// max 0 means no limit.
func (r *Registry) RegisterLimited(ctx context.Context, user, conn string, at Conn, max int) error {
	var full bool
	_, err := r.change(ctx, user, func(rec *userRecord) bool {
		cur, ok := rec.Conns[conn]
		full = !ok && max > 0 && live(rec.Conns) >= max
		if full || ok && cur == at {
			return false
		}
		rec.Conns[conn] = at
		return true
	})
	if err == nil && full {
		return ErrTooManyConns
	}
	return err
}

// live counts the connections that are not being evicted.
func live(conns map[string]Conn) int {
	n := 0
	for _, c := range conns {
		if c.Holder != Evicted {
			n++
		}
	}
	return n
}

// Takeover moves conn of user to next if it is still registered as from
// says (fields left empty match anything). It returns where the connection
// was, and false if it is gone (its grace ran out), the resume secret is
// wrong, or another resume took it first.
func (r *Registry) Takeover(ctx context.Context, user, conn string, from, next Conn) (Conn, bool, error) {
	var prev Conn
	ok, err := r.change(ctx, user, func(rec *userRecord) bool {
		cur, found := rec.Conns[conn]
		if !found || !cur.matches(from) {
			return false
		}
		prev = cur
		rec.Conns[conn] = next
		return true
	})
	return prev, ok, err
}

// Unregister removes conn of user if it is held as at says (fields left
// empty match anything). gone is false only when another holder has it (the
// session resumed elsewhere): then its calls must not end.
func (r *Registry) Unregister(ctx context.Context, user, conn string, at Conn) (gone bool, err error) {
	gone = true
	_, err = r.change(ctx, user, func(rec *userRecord) bool {
		cur, ok := rec.Conns[conn]
		if !ok {
			return false
		}
		if !cur.matches(at) {
			gone = false
			return false
		}
		delete(rec.Conns, conn)
		return true
	})
	return gone && err == nil, err
}

// Evicted is the Holder of a connection a router is evicting: no socket
// holds it and no resume secret opens it (it is gone but for the cleanup).
const Evicted = "evicted"

// Conns returns user's connections, by connection id, but those being
// evicted, as the copy from names has them: a decision that a user or a
// connection is not there, with no compare-and-set to check it, reads the
// leader (kvutil.Read).
func (r *Registry) Conns(ctx context.Context, user string, from kvutil.Read) (map[string]Conn, error) {
	rec, _, err := r.get(ctx, user, from)
	for id, c := range rec.Conns {
		if c.Holder == Evicted {
			delete(rec.Conns, id)
		}
	}
	return rec.Conns, err
}

// Lookup returns user's connections as the nearest replica has them, and
// asks the leader before it reports none: a replica that lags does not
// call a user who has just connected offline.
func (r *Registry) Lookup(ctx context.Context, user string) (map[string]Conn, error) {
	conns, err := r.Conns(ctx, user, kvutil.Nearest)
	if err == nil && len(conns) == 0 {
		conns, err = r.Conns(ctx, user, kvutil.Leader)
	}
	return conns, err
}

func (r *Registry) get(ctx context.Context, user string, from kvutil.Read) (userRecord, uint64, error) {
	rec := userRecord{Conns: map[string]Conn{}}
	e, err := kvutil.Get(ctx, r.js, r.kv, messages.UserKey(user), from)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("presence: get: %w", err)
	}
	if err := json.Unmarshal(e.Value, &rec); err != nil {
		return rec, 0, fmt.Errorf("presence: decode user record: %w", err)
	}
	if rec.Conns == nil {
		rec.Conns = map[string]Conn{}
	}
	return rec, e.Revision, nil
}

// change applies edit to user's record with compare-and-set, retrying on a
// conflicting write after a jittered pause (conflictPause) until it lands
// or ctx is done. edit reports whether it changed anything. There is no
// bound on the retries but ctx: a conflict means another writer's change
// landed, so the writers on one key make progress together, and a caller
// that gave up early would refuse a connection for nothing, or leave one
// that is gone in presence (a phantom: its user stays online, and it takes
// a place under the limit).
//
// The first read is the nearest replica's; "nothing to change" is made sure
// of on the leader's copy, and so is every read after a conflict
// (kvutil.Read).
func (r *Registry) change(ctx context.Context, user string, edit func(*userRecord) bool) (bool, error) {
	key := messages.UserKey(user)
	from := kvutil.Nearest
	for try := 1; ; try++ {
		rec, rev, err := r.get(ctx, user, from)
		if err != nil {
			return false, err
		}
		sure := from == kvutil.Leader
		from = kvutil.Leader
		if !edit(&rec) {
			if !sure {
				continue
			}
			return false, nil
		}
		switch {
		case len(rec.Conns) == 0:
			err = r.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		case rev == 0:
			_, err = r.kv.Create(ctx, key, kvutil.MustJSON(rec))
		default:
			_, err = r.kv.Update(ctx, key, kvutil.MustJSON(rec), rev)
		}
		if err == nil {
			return true, nil
		}
		if !kvutil.IsConflict(err) {
			return false, fmt.Errorf("presence: write: %w", err)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("presence: write: %w after %d conflicting writes", ctx.Err(), try)
		case <-time.After(conflictPause(try)):
		}
	}
}

// conflictPause is the pause before retry n (from 1) after a conflicting
// write: random up to 1 ms, doubling with n, at most 64 ms ("full
// jitter"), so writers that collided spread out instead of colliding
// again.
func conflictPause(n int) time.Duration {
	return rand.N(time.Millisecond << min(n-1, 6))
}
