package meshtest

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// Joins at once to one room, over two gateways and two routers: every
// joiner ends up knowing every other (PROTOCOL.md §14.4: joined lists the
// members so far, member_joined each one after). A member_joined for a
// joiner admitted right after this one can reach the joiner's gateway
// before the reply to its own join; it must not be lost (found by the
// fault harness, internal/faults room_router_kill, before any fault).
func TestRoomSimultaneousJoinersSeeEachOther(t *testing.T) {
	const joiners, rounds = 8, 15
	m := Start(t, Options{Gateway: NoRateLimits})
	for round := range rounds {
		room := fmt.Sprintf("together-%d", round)
		cs := make([]*Client, joiners)
		want := map[string]string{}
		for i := range cs {
			cs[i] = m.DialGrants(i%2, fmt.Sprintf("joiner-%d-%d", round, i), Everywhere)
			want[cs[i].Conn] = cs[i].User
		}
		recs := make([]*Recorder, joiners)
		for i, c := range cs {
			recs[i] = c.Record()
		}
		SendAtOnce(t, &messages.Envelope{Type: messages.TypeJoin, ID: "together", Room: room}, cs...)
		for _, r := range recs {
			if err := awaitView(r, room, want); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// awaitView waits up to Wait until the room view that r's frames make
// (joined, then member_joined and member_left) is want, and fails if a
// frame could not apply to it.
func awaitView(r *Recorder, room string, want map[string]string) error {
	deadline := time.Now().Add(Wait)
	for {
		var view map[string]string
		for _, f := range r.Frames() {
			e := f.Env
			if e.Room != room {
				continue
			}
			switch e.Type {
			case messages.TypeJoined:
				view = map[string]string{}
				for _, mb := range e.Members {
					view[mb.Conn] = mb.User
				}
			case messages.TypeMemberJoined:
				if view == nil || view[e.Member.Conn] != "" {
					return fmt.Errorf("%s: member_joined %v before joined, or for a member it has (%v)", r.Client(), *e.Member, view)
				}
				view[e.Member.Conn] = e.Member.User
			case messages.TypeMemberLeft:
				if view == nil || view[e.Member.Conn] == "" {
					return fmt.Errorf("%s: member_left %v before joined, or for a member it does not have (%v)", r.Client(), *e.Member, view)
				}
				delete(view, e.Member.Conn)
			}
		}
		if maps.Equal(view, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: its view of %s is %v after %v, want %v", r.Client(), room, view, Wait, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
