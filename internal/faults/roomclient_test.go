//go:build faults

package faults

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// roomMax is rooms.max_members of the mesh under test: small, so that the
// room rows fill their rooms.
const roomMax = 4

// roomSignalInterval is the pace of each member's signal to each other
// member: with 3 others, 30 messages a second, under limits.message_rate.
const roomSignalInterval = 100 * time.Millisecond

// roomBooks is what a client knows of its rooms, kept from the frames it
// got exactly as a room client would (joined, a resumed welcome's rooms,
// member_joined, member_left), and the room events it noticed to be wrong.
// Guarded by the client's mu.
type roomBooks struct {
	views        map[string]map[string]string // room → member conn → user
	expectJoined map[string]int               // room → joins acknowledged, their joined to come
	roomReqs     map[string]*roomReq          // request id → the room request
	lefts        []memberLeft                 // every member_left, in arrival order
	sigRefused   map[string]int               // room signal key → signals refused
	wrongRoom    int                          // wrong room events noticed (see row)
	reordered    int                          // member_joined that put its view over the limit
}

// roomReq is a join or leave written, and whether it was answered.
type roomReq struct {
	typ, room string
	answered  bool
}

// memberLeft is one member_left received.
type memberLeft struct {
	room, user, conn, reason string
	at                       time.Time
}

func newRoomBooks() roomBooks {
	return roomBooks{
		views: map[string]map[string]string{}, expectJoined: map[string]int{},
		roomReqs: map[string]*roomReq{}, sigRefused: map[string]int{},
	}
}

// roomUsers makes n clients whose tokens grant every room.
func roomUsers(t testing.TB, m *mesh, prefix string, n int) []*client {
	cs := users(t, m, prefix, n)
	for _, c := range cs {
		tok, err := gateway.MintGrants(gateway.MintConfig{Alg: "HS256", Secret: secret}, c.user, time.Hour,
			gateway.Grants{Rooms: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		c.tok = tok
	}
	return cs
}

// roomSigKey names the room signals of user from to user to, as the keys
// of a client's signal books (nextN, acked, recv).
func roomSigKey(room, from, to string) string { return "room\x00" + room + "\x00" + from + "\x00" + to }

func isRoomSigKey(key string) bool { return strings.HasPrefix(key, "room\x00") }

// wrongEvent books a wrong room event; call with mu held.
func (c *client) wrongEvent(format string, args ...any) {
	c.wrongRoom++
	c.t.Errorf("%s: WRONG ROOM EVENT: %s", c, fmt.Sprintf(format, args...))
}

// setView makes room's view the members listed; call with mu held. A
// list longer than the limit is a room over its limit.
func (c *client) setView(room string, members []messages.RoomMember) {
	v := make(map[string]string, len(members))
	for _, mb := range members {
		v[mb.Conn] = mb.User
	}
	c.views[room] = v
	if len(members) > roomMax {
		c.doubleBook++
		c.t.Errorf("%s: OVER LIMIT: room %s lists %d members, the limit is %d", c, room, len(members), roomMax)
	}
}

// welcomeRooms takes the rooms of a welcome; call with mu held. A fresh
// session is in no room; a resumed one in those listed, as listed.
func (c *client) welcomeRooms(w messages.Welcome) {
	clear(c.views)
	clear(c.expectJoined)
	for _, ri := range w.Rooms {
		c.setView(ri.Room, ri.Members)
	}
}

// roomAnswer books the answer to a room request; call with mu held. A
// second answer to one request is wrong.
func (c *client) roomAnswer(e *messages.Envelope) {
	req, ok := c.roomReqs[e.ID]
	if !ok {
		return
	}
	if req.answered {
		c.wrongEvent("a second answer %s to %s %s", describe(e), req.typ, req.room)
		return
	}
	req.answered = true
	if e.Type != messages.TypeAck {
		return
	}
	switch req.typ {
	case messages.TypeJoin:
		c.expectJoined[req.room]++
	case messages.TypeLeave:
		delete(c.views, req.room)
	}
}

// roomEvent applies a room event to the views and reports whether it
// goes to the inbox (joined does, for the joiner waiting on it); call with
// mu held. What a room client would notice as wrong is booked.
func (c *client) roomEvent(e *messages.Envelope) bool {
	switch e.Type {
	case messages.TypeJoined:
		if c.expectJoined[e.Room] == 0 {
			c.wrongEvent("joined %s without a join acknowledged", e.Room)
		} else {
			c.expectJoined[e.Room]--
		}
		c.setView(e.Room, e.Members)
		if !slices.Contains(e.Members, messages.RoomMember{User: c.user, Conn: c.conn}) {
			c.wrongEvent("joined %s lists %v, not itself", e.Room, e.Members)
		}
		return true
	case messages.TypeMemberJoined:
		v := c.views[e.Room]
		switch {
		case e.Member == nil || v == nil:
			c.wrongEvent("member_joined %v for room %s it is not in", e.Member, e.Room)
		case v[e.Member.Conn] != "":
			c.wrongEvent("member_joined %v for a member it has in %s", *e.Member, e.Room)
		default:
			v[e.Member.Conn] = e.Member.User
			if len(v) > roomMax {
				// Not the room over its limit (the joined lists, the
				// answers and the settled views say that): member events
				// of two changes made by two routers at once can arrive in
				// either order, so a newcomer may come before the
				// member_left of the member whose place it took.
				c.reordered++
				c.t.Logf("%s: %d members in its view of %s, for %d places, until a member_left follows: %v", c, len(v), e.Room, roomMax, v)
			}
		}
	case messages.TypeMemberLeft:
		if e.Member == nil {
			c.wrongEvent("member_left without member in %s", e.Room)
			return false
		}
		c.lefts = append(c.lefts, memberLeft{room: e.Room, user: e.Member.User, conn: e.Member.Conn, reason: e.Reason, at: time.Now()})
		v := c.views[e.Room]
		switch {
		case v == nil || v[e.Member.Conn] != e.Member.User:
			c.wrongEvent("member_left %v for a member it does not have in %s", *e.Member, e.Room)
		case e.Member.Conn == c.conn:
			delete(c.views, e.Room)
		default:
			delete(v, e.Member.Conn)
		}
	}
	return false
}

// roomRequest writes a join or leave of room and waits up to d for its
// answer: ack (nil error) or error (returned with it).
func (c *client) roomRequest(typ, room string, d time.Duration) (*messages.Envelope, error) {
	env := &messages.Envelope{Type: typ, ID: typ + "-" + messages.NewID()[:10], Room: room}
	c.mu.Lock()
	c.roomReqs[env.ID] = &roomReq{typ: typ, room: room}
	c.mu.Unlock()
	if err := c.send(env); err != nil {
		return nil, err
	}
	r, err := c.await(d, typ+" answer "+env.ID, func(e *messages.Envelope) bool {
		return (e.Type == messages.TypeAck || e.Type == messages.TypeError) && e.ID == env.ID
	})
	if err != nil {
		return nil, err
	}
	if r.Type == messages.TypeError {
		return r, fmt.Errorf("%s: %s %s refused: %s %s", c, typ, room, r.Code, r.Message)
	}
	return r, nil
}

// join joins room and waits for its ack and then its joined, up to d in
// all; it returns the refusal, if any.
func (c *client) join(room string, d time.Duration) (*messages.Envelope, error) {
	deadline := time.Now().Add(d)
	if r, err := c.roomRequest(messages.TypeJoin, room, d); err != nil {
		return r, err
	}
	if _, err := c.await(time.Until(deadline), "joined "+room, func(e *messages.Envelope) bool {
		return e.Type == messages.TypeJoined && e.Room == room
	}); err != nil {
		return nil, err
	}
	return nil, nil
}

// view is the members of room as c knows them (conn → user); nil when c
// is not in it.
func (c *client) view(room string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.views[room]; v != nil {
		return maps.Clone(v)
	}
	return nil
}

// connID is c's connection id.
func (c *client) connID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// leftSeen returns the first member_left c got about conn in room, if any.
func (c *client) leftSeen(room, conn string) (memberLeft, bool) { return c.leftSince(0, room, conn) }

// roomPeer is another member of one of c's rooms.
type roomPeer struct{ room, conn, user string }

// roomPeers is every other member of c's rooms, as c knows them.
func (c *client) roomPeers() []roomPeer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []roomPeer
	for room, v := range c.views {
		for conn, user := range v {
			if conn != c.conn {
				ps = append(ps, roomPeer{room, conn, user})
			}
		}
	}
	return ps
}

// roomSignal writes the next numbered room signal to member p, as signal
// does for a call.
func (c *client) roomSignal(p roomPeer) {
	c.writeSignal(roomSigKey(p.room, c.user, p.user), "rsig-"+messages.NewID()[:8], &messages.Envelope{Room: p.room, ToConn: p.conn})
}

// sent is the number of the last signal c wrote under key.
func (c *client) sent(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nextN[key]
}

// refusedSignals is how many of c's signals under key were refused.
func (c *client) refusedSignals(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sigRefused[key]
}

// receivedSince is how many signals under key numbered above base c got.
func (c *client) receivedSince(key string, base int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for _, n := range c.recv[key] {
		if n > base {
			k++
		}
	}
	return k
}

// lostFromSince is lostFrom for the signals numbered above base only: what
// from wrote after a recovery.
func (c *client) lostFromSince(from *client, key string, base int) (lost int, detail string) {
	from.mu.Lock()
	var acked []int
	for n := range from.acked[key] {
		if n > base {
			acked = append(acked, n)
		}
	}
	from.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[int]bool{}
	top := base
	var missing, disorder []int
	for _, n := range c.recv[key] {
		if n <= base || seen[n] {
			continue
		}
		seen[n] = true
		if n < top {
			disorder = append(disorder, n)
		}
		top = max(top, n)
	}
	for _, n := range acked {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	if len(missing)+len(disorder) > 0 {
		detail = fmt.Sprintf("%s→%s %q after #%d: acked %d, received %d; missing %v, out of order %v",
			from, c, key, base, len(acked), len(seen), missing, disorder)
	}
	return len(missing) + len(disorder), detail
}

// startRoomTraffic has every member of members send a numbered room signal
// to every other member of its rooms, as it knows them, every
// roomSignalInterval, until halted. A quiet or away member sends nothing.
func startRoomTraffic(t testing.TB, members []*client) *traffic {
	return startTicking(t, roomSignalInterval, func() {
		var wg sync.WaitGroup
		for _, c := range members {
			if !c.quiet.Load() {
				wg.Go(func() {
					for _, p := range c.roomPeers() {
						c.roomSignal(p)
					}
				})
			}
		}
		wg.Wait()
	})
}

// settleRooms waits until none of cs has a signal unacknowledged and
// check reports nothing lost, or the bound passes (as settle does for
// calls).
func settleRooms(cs []*client, d time.Duration, lost func() int) {
	_ = poll(d, func() error {
		for _, c := range cs {
			if n := c.unacked(); n > 0 {
				return fmt.Errorf("%s: %d signals unacknowledged", c, n)
			}
		}
		if n := lost(); n > 0 {
			return fmt.Errorf("%d signals not arrived", n)
		}
		return nil
	})
}

// leftCount is how many member_left c has got so far.
func (c *client) leftCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lefts)
}

// leftSince returns the first member_left about conn in room among those
// c got after the first i.
func (c *client) leftSince(i int, room, conn string) (memberLeft, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lefts[min(i, len(c.lefts)):] {
		if l.room == room && l.conn == conn {
			return l, true
		}
	}
	return memberLeft{}, false
}
