// Package kvutil holds the small JetStream KV helpers that the router and
// presence share.
package kvutil

import (
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// IsConflict reports a compare-and-set failure: the key was written since it
// was read (or exists, for Create). A bucket with one replica reports it
// with error code 10071, a replicated one with 10164.
func IsConflict(err error) bool {
	var apiErr *jetstream.APIError
	return err != nil && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}

// Subject is the stream subject behind key in kv. Publishing there with
// jetstream.WithMsgTTL and WithExpectLastSequencePerSubject is a
// compare-and-set write that keeps a TTL, which KV Put and Update cannot.
func Subject(kv jetstream.KeyValue, key string) string {
	return "$KV." + kv.Bucket() + "." + key
}

// MustJSON marshals values that cannot fail to marshal.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("kvutil: marshal: " + err.Error())
	}
	return b
}
