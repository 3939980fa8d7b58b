package meshtest

import (
	"fmt"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// The limit is exact across the cluster (PROTOCOL.md §14.9): 50 joins at
// once to a room with 3 places left, over two gateways and two routers:
// exactly 3 get joined, 47 room_full, and the members see exactly the 3.
func TestRoomLimitRace(t *testing.T) {
	const joiners, rounds = 50, 3
	m := Start(t, Options{Gateway: NoRateLimits})
	for round := range rounds {
		room := fmt.Sprintf("race-%d", round)
		members := make([]*Client, 5) // of 8: 3 places left
		for i := range members {
			members[i] = m.DialGrants(i%2, fmt.Sprintf("member-%d-%d", round, i), Everywhere)
			members[i].Join(room)
			for _, earlier := range members[:i] {
				earlier.ExpectMemberJoined(room, members[i])
			}
		}
		cs := make([]*Client, joiners)
		for i := range cs {
			cs[i] = m.DialGrants(i%2, fmt.Sprintf("joiner-%d-%02d", round, i), Everywhere)
		}
		SendAtOnce(t, &messages.Envelope{Type: messages.TypeJoin, ID: "race", Room: room}, cs...)
		var won []*Client
		full := 0
		for _, c := range cs {
			e := c.Next()
			switch {
			case e.Type == messages.TypeAck && e.ID == "race":
				if j := c.Expect(messages.TypeJoined); len(j.Members) > 8 {
					t.Fatalf("%s: joined a room of %d", c, len(j.Members))
				}
				won = append(won, c)
			case e.Type == messages.TypeError && e.Code == messages.CodeRoomFull:
				full++
			default:
				t.Fatalf("%s: got %s", c, describe(e))
			}
		}
		if len(won) != 3 || full != joiners-3 {
			t.Fatalf("round %d: %d joined, %d room_full; want 3 and %d", round, len(won), full, joiners-3)
		}
		// Every earlier member hears of exactly the three.
		for _, mem := range members {
			seen := map[string]bool{}
			for range won {
				e := mem.Expect(messages.TypeMemberJoined)
				seen[e.Member.Conn] = true
			}
			for _, w := range won {
				if !seen[w.Conn] {
					t.Fatalf("%s: no member_joined for %s", mem, w)
				}
			}
			m.Barrier(mem)
		}
	}
}
