package router

import (
	"testing"

	"github.com/callmesh/callmesh/messages"
)

func TestResumedCallListsOnlyTheConnectionsParties(t *testing.T) {
	ringing := &Call{ID: "c", Caller: "alice", CallerConn: "a1", Callee: "bob", State: Ringing}
	accepted := &Call{ID: "c", Caller: "alice", CallerConn: "a1", Callee: "bob", CalleeConn: "b1", State: Accepted}
	info := func(state, role, peer, peerConn string) messages.ResumedCall {
		return messages.ResumedCall{CallInfo: messages.CallInfo{Call: "c", State: state, Role: role, Peer: peer}, PeerConn: peerConn}
	}
	for _, tc := range []struct {
		name       string
		c          *Call
		user, conn string
		want       *messages.ResumedCall
	}{
		{"ringing caller", ringing, "alice", "a1", ptr(info("ringing", "caller", "bob", ""))},
		{"another caller device", ringing, "alice", "a2", nil},
		{"any ringing callee device", ringing, "bob", "b9", ptr(info("ringing", "callee", "alice", ""))},
		{"accepted caller", accepted, "alice", "a1", ptr(info("accepted", "caller", "bob", "b1"))},
		{"accepting device", accepted, "bob", "b1", ptr(info("accepted", "callee", "alice", "a1"))},
		{"another callee device", accepted, "bob", "b2", nil},
		{"stranger", accepted, "carol", "a1", nil},
	} {
		got, ok := resumedCall(tc.c, tc.user, tc.conn)
		if ok != (tc.want != nil) || ok && got != *tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, ok, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
