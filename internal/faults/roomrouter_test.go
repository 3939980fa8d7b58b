//go:build faults

package faults

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// answerBound bounds the wait for the answer to a room request: the
// gateway's router.timeout (5 s by default, retries included) + slack.
const answerBound = 5*time.Second + slack

// roomRouterKill: users on the three gateways join and leave a few rooms
// of rooms.max_members places in rounds, all of a round's requests at
// once (every user not in a room joins one at random, every other member
// leaves with even odds), while router 0 is SIGKILLed a quarter of the way
// in, restarted, and router 1 SIGKILLed halfway. The gateways retry
// against the surviving router. Every join must get exactly one answer,
// joined or room_full (unavailable is retried, as a client would); no room
// may ever have more members than its limit; after each round every
// member's view (joined + member_joined − member_left) must be the room as
// the answers made it, each leave reported to the members that stayed
// with member_left{left}, and a room signal from every member to every
// other delivered. Afterwards every user, in no room, joins a new one.
// Time: the slowest request → answer after the first kill.
func roomRouterKill(t *testing.T, m *mesh, r *row, n int) {
	nRooms := max(n/2, 2)
	us := roomUsers(t, m, "rrk", 3*n)
	for i, c := range us {
		c.mustDial(i % 3)
	}
	rooms := make([]string, nRooms)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("router kill.%d ☎", i)
	}
	run := 12 * time.Second
	if testing.Short() {
		run = 8 * time.Second
	}
	st := &churnStats{r: r}
	r.inFlightWhat = "room requests"
	ch := &roomChurn{t: t, st: st, in: map[*client]string{}, byConn: map[string]*client{}}
	for _, c := range us {
		ch.in[c] = ""
		ch.byConn[c.connID()] = c
	}
	end := time.Now().Add(run)
	done := make(chan struct{})
	defer func() { <-done }() // also when the test fails below: the rounds use t
	go func() {
		defer close(done)
		for round := 1; time.Now().Before(end); round++ {
			if !ch.round(rooms) {
				t.Errorf("round %d went wrong: churn stopped", round)
				return
			}
			ch.rounds++
		}
	}()
	// Each kill waits for a round's requests to be under way.
	killRoutersInTurn(m, st, run, func() { whenBusy(st, int32(len(us)/3)) })
	<-done
	r.time = "recover " + ms(st.slowest)
	reordered := 0
	for _, c := range us {
		c.mu.Lock()
		reordered += c.reordered
		c.mu.Unlock()
	}
	t.Logf("%d rounds: %d joined, %d room_full, %d left, %d requests retried after unavailable; "+
		"%d member_joined came before the member_left of the member replaced", ch.rounds, ch.joined, ch.full, ch.left, ch.retried, reordered)

	// Everyone leaves; then every user, in no room, joins a new one.
	var wg sync.WaitGroup
	for c, room := range ch.in {
		if room != "" {
			wg.Go(func() { ch.do(c, messages.TypeLeave, room) })
		}
	}
	wg.Wait()
	for _, c := range us {
		c.mu.Lock()
		if len(c.views) > 0 {
			t.Errorf("%s: WRONG ROOM EVENT: still in %v after leaving", c, slices.Collect(maps.Keys(c.views)))
			c.wrongRoom++
		}
		c.mu.Unlock()
	}
	for i := 0; i < len(us); i += roomMax {
		probeJoin(t, r, fmt.Sprintf("after router kill.%d", i/roomMax), us[i:min(i+roomMax, len(us))])
	}
}

// whenBusy returns once at least n room requests are awaiting their
// answer, or after 5 s.
func whenBusy(st *churnStats, n int32) {
	deadline := time.Now().Add(5 * time.Second)
	for st.live.Load() < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
	}
}

// roomChurn is roomRouterKill's books: where each user is, as the answers
// to its requests say.
type roomChurn struct {
	t  *testing.T
	st *churnStats
	in map[*client]string // user → the room it is in ("" none); only the round loop touches it
	// byConn is each user's client by its connection id (none reconnects).
	byConn map[string]*client

	rounds, joined, full, left int
	mu                         sync.Mutex // guards retried
	retried                    int
}

// round makes one round of requests and checks its outcome. It reports
// false when a request or the check went wrong, after which the books no
// longer describe the rooms.
func (ch *roomChurn) round(rooms []string) bool {
	t, st := ch.t, ch.st
	before := ch.members()
	lefts := map[*client]int{}
	for c := range ch.in {
		lefts[c] = c.leftCount()
	}
	type op struct {
		c       *client
		typ     string
		room    string
		outcome string
	}
	var ops []*op
	for c, room := range ch.in {
		switch {
		case room == "":
			ops = append(ops, &op{c: c, typ: messages.TypeJoin, room: rooms[rand.N(len(rooms))]})
		case rand.N(2) == 0:
			ops = append(ops, &op{c: c, typ: messages.TypeLeave, room: room})
		}
	}
	var wg sync.WaitGroup
	for _, o := range ops {
		wg.Go(func() { o.outcome = ch.do(o.c, o.typ, o.room) })
	}
	wg.Wait()

	var joiners []*client
	var leavers []*op
	ok := true
	for _, o := range ops {
		switch o.outcome {
		case "joined":
			ch.in[o.c] = o.room
			ch.joined++
			joiners = append(joiners, o.c)
		case "left":
			ch.in[o.c] = ""
			ch.left++
			leavers = append(leavers, o)
		case "room_full":
			ch.full++
		case "refused":
		default:
			ok = false
		}
	}
	st.book(func(r *row) { r.continuedWant += len(joiners) })
	after := ch.members()
	for room, members := range after {
		if len(members) > roomMax {
			t.Errorf("OVER LIMIT: %d joins to %q answered joined, for %d places: %v", len(members), room, roomMax, members)
			st.book(func(r *row) { r.doubleBook++ })
			ok = false
		}
	}
	if !ok {
		return false
	}

	// Every member's view is the room, once the events are in.
	wrongRooms := map[string]bool{}
	if err := poll(slack, func() error {
		for c, room := range ch.in {
			if got, want := c.view(room), after[room]; room != "" && !maps.Equal(got, want) {
				return fmt.Errorf("%s's view of %q is %v, the room is %v", c, room, got, want)
			}
		}
		return nil
	}); err != nil {
		for c, room := range ch.in {
			if room == "" {
				continue
			}
			got, want := c.view(room), after[room]
			for conn, user := range want {
				if got[conn] != user {
					t.Errorf("WRONG ROOM EVENT: %s never heard of member %s (%s) of %q", c, user, conn, room)
					st.book(func(r *row) { r.wrongRoom++ })
					wrongRooms[room] = true
				}
			}
			for conn, user := range got {
				if _, in := want[conn]; in {
					continue
				}
				wrongRooms[room] = true
				if slices.ContainsFunc(leavers, func(o *op) bool { return o.c.user == user && o.room == room }) {
					t.Errorf("LOST MEMBER_LEFT: %s has %s (%s) in %q, who left", c, user, conn, room)
					st.book(func(r *row) { r.lostEnded++ })
				} else {
					t.Errorf("WRONG ROOM EVENT: %s has %s (%s) in %q, who is not a member", c, user, conn, room)
					st.book(func(r *row) { r.wrongRoom++ })
				}
			}
		}
		return false
	}
	st.book(func(r *row) { r.continued += len(joiners) })

	// Each leave was told to every member that stayed, as left.
	for _, o := range leavers {
		conn := o.c.connID()
		good := true
		for c := range before[o.room] {
			if _, stayed := after[o.room][c]; !stayed {
				continue
			}
			m := ch.client(c)
			if l, seen := m.leftSince(lefts[m], o.room, conn); !seen || l.reason != messages.LeftLeft {
				t.Errorf("%s: member_left about %s's leave of %q: %+v (seen %v), want reason left", m, o.c, o.room, l, seen)
				good = false
			}
		}
		if len(after[o.room]) > 0 {
			st.book(func(r *row) {
				r.endedWant++
				if good {
					r.endedOK++
				}
			})
		}
	}

	return ch.signalAll(after)
}

// members is every room's members by the books: room → conn → user.
func (ch *roomChurn) members() map[string]map[string]string {
	ms := map[string]map[string]string{}
	for c, room := range ch.in {
		if room == "" {
			continue
		}
		if ms[room] == nil {
			ms[room] = map[string]string{}
		}
		ms[room][c.connID()] = c.user
	}
	return ms
}

// client is the user holding connection conn.
func (ch *roomChurn) client(conn string) *client { return ch.byConn[conn] }

// signalAll has every member of each room send one room signal to every
// other; each must be acknowledged and arrive. It reports false if one was
// refused or lost.
func (ch *roomChurn) signalAll(rooms map[string]map[string]string) bool {
	type dir struct {
		from, to *client
		key      string
		base     int
	}
	var dirs []dir
	var cs []*client
	for room, members := range rooms {
		for fromConn := range members {
			from := ch.client(fromConn)
			cs = append(cs, from)
			for toConn, toUser := range members {
				if toConn == fromConn {
					continue
				}
				key := roomSigKey(room, from.user, toUser)
				dirs = append(dirs, dir{from: from, to: ch.client(toConn), key: key, base: from.sent(key)})
				from.roomSignal(roomPeer{room: room, conn: toConn, user: toUser})
			}
		}
	}
	lost := func(report bool) int {
		n := 0
		for _, d := range dirs {
			l, detail := d.to.lostFromSince(d.from, d.key, d.base)
			if l == 0 && d.from.refusedSignals(d.key) == 0 && d.to.receivedSince(d.key, d.base) == 0 {
				l, detail = 1, fmt.Sprintf("%s→%s %q: nothing received", d.from, d.to, d.key)
			}
			if report && l > 0 {
				ch.t.Errorf("LOST SIGNAL: %s", detail)
			}
			n += l
		}
		return n
	}
	settleRooms(cs, slack, func() int { return lost(false) })
	ok := true
	for _, d := range dirs {
		if k := d.from.refusedSignals(d.key); k > 0 {
			ch.t.Errorf("WRONG ROOM EVENT: %s's room signal to %s refused (%d so far)", d.from, d.to, k)
			ch.st.book(func(r *row) { r.wrongRoom++ })
			ok = false
		}
	}
	if l := lost(true); l > 0 {
		ch.st.book(func(r *row) { r.lostSignal += l })
		ok = false
	}
	return ok
}

// do makes one join or leave of c and returns its outcome: joined,
// room_full, left, refused (a ghost busy, booked), or failed (the error
// reported). An unavailable or internal answer is tried again, as a
// client would.
func (ch *roomChurn) do(c *client, typ, room string) string {
	t, st := ch.t, ch.st
	for try := 1; ; try++ {
		start := time.Now()
		st.live.Add(1)
		var refusal *messages.Envelope
		var err error
		if typ == messages.TypeJoin {
			refusal, err = c.join(room, answerBound)
		} else {
			refusal, err = c.roomRequest(typ, room, answerBound)
		}
		st.live.Add(-1)
		st.invited(start)
		code := errorCode(refusal)
		switch {
		case err == nil && typ == messages.TypeJoin:
			return "joined"
		case err == nil:
			return "left"
		case code == messages.CodeUnavailable || code == messages.CodeInternal:
			ch.mu.Lock()
			ch.retried++
			ch.mu.Unlock()
			if try < 5 {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			t.Errorf("%s %s %q: still %s after %d tries", c, typ, room, code, try)
		case typ == messages.TypeJoin && code == messages.CodeRoomFull:
			return "room_full"
		case typ == messages.TypeJoin && code == messages.CodeInvalidState:
			t.Errorf("GHOST BUSY: %s is in no room: %v", c, err)
			st.book(func(r *row) { r.ghostBusy++ })
			return "refused"
		case refusal == nil:
			t.Errorf("WRONG ROOM EVENT: %s %s %q: no answer: %v", c, typ, room, err)
			st.book(func(r *row) { r.wrongRoom++ })
		default:
			t.Errorf("%s %s %q: %v", c, typ, room, err)
		}
		return "failed"
	}
}
