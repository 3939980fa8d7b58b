package kvutil

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Read names the copy of a replicated bucket a read is served by. A write
// is acknowledged once most replicas have it: the nearest one may not have
// it yet (a key just created is then "not found"), the stream's leader has
// it.
type Read bool

const (
	// Nearest is KV Get (a direct get), answered by the nearest replica:
	// for a decision that a compare-and-set checks, which a lagging copy
	// only makes fail and be made again, and for what a moment's lag
	// cannot harm.
	Nearest Read = false
	// Leader asks the stream's leader (LeaderGet): for what is decided
	// without a write to check it, that something does not exist or that a
	// request is refused, and for a decision made again after a lost
	// compare-and-set.
	Leader Read = true
)

// Get reads key's last value from the copy from names;
// jetstream.ErrKeyNotFound if it has none.
func Get(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, key string, from Read) (Entry, error) {
	if from == Leader {
		return LeaderGet(ctx, js.Conn(), kv, key)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Value: e.Value(), Revision: e.Revision(), Created: e.Created()}, nil
}

// Entry is a key's last value as Get reads it.
type Entry struct {
	Value    []byte
	Revision uint64
	Created  time.Time
}

// LeaderGet reads key's last value from the leader of kv's stream
// ($JS.API.STREAM.MSG.GET), where KV Get (a direct get) is answered by
// whichever replica is nearest, and a replica may not have a write yet that
// the leader has acknowledged. It returns jetstream.ErrKeyNotFound when the
// key has no value: none was written, or its last entry is a deletion, a
// purge or an expiry marker.
func LeaderGet(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, key string) (Entry, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": Subject(kv, key)})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+kv.Bucket(), req)
	if err != nil {
		return Entry{}, fmt.Errorf("kvutil: read %s from the leader: %w", key, err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Seq     uint64    `json:"seq"`
			Headers []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return Entry{}, fmt.Errorf("kvutil: read %s from the leader: %w", key, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return Entry{}, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return Entry{}, fmt.Errorf("kvutil: read %s from the leader: %w", key, resp.Error)
	case resp.Message == nil:
		return Entry{}, fmt.Errorf("kvutil: read %s from the leader: %w", key, jetstream.ErrInvalidJetStreamResponse)
	}
	if len(resp.Message.Headers) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Headers)
		if err != nil {
			return Entry{}, fmt.Errorf("kvutil: read %s from the leader: %w", key, err)
		}
		// The entries KV Get reports as deleted (jetstream's kvs.get).
		switch h.Get("KV-Operation") + "/" + h.Get(jetstream.MarkerReasonHeader) {
		case "DEL/", "PURGE/", "/MaxAge", "/Purge", "/Remove":
			return Entry{}, jetstream.ErrKeyNotFound
		}
	}
	return Entry{Value: resp.Message.Data, Revision: resp.Message.Seq, Created: resp.Message.Time}, nil
}
