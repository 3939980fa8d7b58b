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

// seat is one member of a room of roomGatewayKill, and what the fault does
// to it.
type seat struct {
	c    *client
	room string
	gw   int  // the gateway it joined on
	fate fate // what becomes of it
	conn string
}

type fate int

const (
	survives fate = iota // on a gateway that stays up
	resumes              // on the killed gateway; resumes on another at once
	gone                 // on the killed gateway; never comes back
)

// stays reports whether the fault must not end s's membership.
func (s *seat) stays() bool { return s.fate != gone }

// roomGatewayKill: rooms of 3 and 4 members, each with one or two members
// on gateway 0 and the others on gateways 1 and 2, signal every member to
// every other; gateway 0 is SIGKILLed. Half its members resume at once on
// another gateway: they must keep their membership (the resumed welcome
// lists the room) and signal must flow between them and the others again.
// The others never come back: every remaining member must get
// member_left{disconnected} about each, within presence TTL + grace +
// slack, and nobody may hear of another member leaving. Signal between
// members on gateways 1 and 2 must never be lost. Afterwards every member
// leaves (the others get member_left{left}) and every user, the gone ones
// on a fresh session, joins a new room. Time: kill → the last resumed
// welcome, and kill → the last member_left{disconnected}.
func roomGatewayKill(t *testing.T, m *mesh, r *row, n int) {
	rooms := roomSeats(t, m, max(n/2, 3))
	var all, stayers []*seat
	var clients []*client
	for _, rs := range rooms {
		for _, s := range rs {
			all = append(all, s)
			clients = append(clients, s.c)
			if s.stays() {
				stayers = append(stayers, s)
			}
		}
	}
	r.inFlight, r.inFlightWhat = len(all), "members"
	r.continuedWant, r.endedWant = len(stayers), len(all)-len(stayers)

	tr := startRoomTraffic(t, clients)
	time.Sleep(500 * time.Millisecond)
	killed := time.Now()
	m.gateways[0].kill()

	// Each member of the dead gateway that comes back does so at once:
	// notice the dead socket, wait a reconnect jitter, resume elsewhere.
	var took []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, s := range all {
		if s.fate != resumes {
			continue
		}
		wg.Go(func() {
			if err := poll(5*time.Second, func() error {
				if s.c.connected() {
					return fmt.Errorf("%s has not noticed its gateway die", s.c)
				}
				return nil
			}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(rand.N(100 * time.Millisecond))
			if err := resumeRoom(s, 1+i%2, rooms[s.room]); err != nil {
				t.Errorf("RESUME: %v", err)
				return
			}
			mu.Lock()
			took = append(took, time.Since(killed))
			mu.Unlock()
		})
	}
	wg.Wait()
	recovered := maxOf(took)

	// Every remaining member hears of each gone member.
	bound := presenceTTL + resumeGrace + slack
	var detected []time.Duration
	for _, g := range all {
		if g.fate != gone {
			continue
		}
		ok := true
		for _, s := range rooms[g.room] {
			if !s.stays() {
				continue
			}
			var l memberLeft
			err := poll(time.Until(killed.Add(bound)), func() error {
				var seen bool
				if l, seen = s.c.leftSeen(g.room, g.conn); !seen {
					return fmt.Errorf("%s: no member_left about %s in %q %v after the kill", s.c, g.c, g.room, bound)
				}
				return nil
			})
			switch {
			case err != nil:
				t.Errorf("LOST MEMBER_LEFT: %v", err)
				r.lostEnded++
				ok = false
			case l.reason != messages.LeftDisconnected:
				t.Errorf("%s: member_left about %s in %q with reason %s, want disconnected", s.c, g.c, g.room, l.reason)
				ok = false
			default:
				detected = append(detected, l.at.Sub(killed))
			}
		}
		if ok {
			r.endedOK++
		}
	}
	r.time = "recover " + ms(recovered) + ", detect " + ms(maxOf(detected))

	// Signal flows again between every two remaining members.
	base := map[string]int{}
	pairs := stayerPairs(rooms)
	for _, p := range pairs {
		key := roomSigKey(p[0].room, p[0].c.user, p[1].c.user)
		base[key] = p[0].c.sent(key)
	}
	time.Sleep(time.Second)
	tr.halt()
	lostSignals := func(report bool) int {
		lost := 0
		for _, p := range pairs {
			from, to := p[0], p[1]
			key := roomSigKey(from.room, from.c.user, to.c.user)
			var l int
			var detail string
			if from.fate == survives && to.fate == survives {
				l, detail = to.c.lostFrom(from.c, key)
			} else {
				l, detail = to.c.lostFromSince(from.c, key, base[key])
			}
			if l > 0 && report {
				t.Errorf("LOST SIGNAL: %s", detail)
			}
			lost += l
		}
		return lost
	}
	settleRooms(clients, 5*time.Second, func() int { return lostSignals(false) })
	r.lostSignal += lostSignals(true)

	// Membership: nobody heard of a remaining member leaving, every view is
	// the room, signal flowed both ways since the recovery, none refused.
	lost := map[*seat]bool{}
	for _, p := range pairs {
		from, to := p[0], p[1]
		if l, seen := to.c.leftSeen(from.room, from.conn); seen {
			t.Errorf("%s: WRONG ROOM EVENT: member_left{%s} about %s, who is still in %q", to.c, l.reason, from.c, from.room)
			r.wrongRoom++
			lost[from] = true
		}
		key := roomSigKey(from.room, from.c.user, to.c.user)
		if k := from.c.refusedSignals(key); k > 0 {
			t.Errorf("%s: WRONG ROOM EVENT: %d room signals to %s in %q refused", from.c, k, to.c, from.room)
			r.wrongRoom++
			lost[from] = true
		}
		if to.c.receivedSince(key, base[key]) == 0 {
			t.Errorf("%s: no room signal from %s in %q since the recovery", to.c, from.c, from.room)
			lost[from], lost[to] = true, true
		}
	}
	for _, s := range stayers {
		want := map[string]string{}
		for _, o := range rooms[s.room] {
			if o.stays() {
				want[o.conn] = o.c.user
			}
		}
		if got := s.c.view(s.room); !maps.Equal(got, want) {
			t.Errorf("%s: WRONG ROOM EVENT: its view of %q is %v, the room is %v", s.c, s.room, got, want)
			r.wrongRoom++
			lost[s] = true
		}
		if !lost[s] {
			r.continued++
		}
	}

	leaveAll(t, r, rooms)
	for i, s := range all {
		if s.fate != gone {
			continue
		}
		w, err := s.c.dial(1+i%2, true)
		if err != nil {
			t.Fatal(err)
		}
		if w.Resumed || len(w.Rooms) > 0 {
			t.Errorf("%s came back after it was reported disconnected: welcome resumed %v, rooms %v", s.c, w.Resumed, w.Rooms)
		}
	}
	for id, rs := range rooms {
		var cs []*client
		for _, s := range rs {
			cs = append(cs, s.c)
		}
		probeJoin(t, r, "after "+id, cs)
	}
}

// roomSeats makes k rooms of 3 and 4 members and joins them: in each, the
// first member (and in a room of 4 the second) on gateway 0, the others on
// gateways 1 and 2. In a room of 4 the first on gateway 0 resumes and the
// second is gone; in a room of 3 it resumes in every other one.
func roomSeats(t *testing.T, m *mesh, k int) map[string][]*seat {
	rooms := map[string][]*seat{}
	for i := range k {
		size := 3 + i%2
		id := fmt.Sprintf("gw kill.%d ★", i)
		for j, c := range roomUsers(t, m, fmt.Sprintf("rgk%d", i), size) {
			s := &seat{c: c, room: id, gw: 1 + (i+j)%2}
			switch {
			case j == 0 && (size == 4 || (i/2)%2 == 0):
				s.gw, s.fate = 0, resumes
			case j == 0 || j == 1 && size == 4:
				s.gw, s.fate = 0, gone
			}
			rooms[id] = append(rooms[id], s)
		}
	}
	for id, rs := range rooms {
		for j, s := range rs {
			s.c.mustDial(s.gw)
			s.conn = s.c.connID()
			if refusal, err := s.c.join(id, 10*time.Second); err != nil {
				t.Fatalf("join before the fault: %v (%v)", err, refusal)
			}
			waitFor(t, 10*time.Second, func() error {
				for _, o := range rs[:j] {
					if o.c.view(id)[s.conn] != s.c.user {
						return fmt.Errorf("%s: no member_joined about %s in %q", o.c, s.c, id)
					}
				}
				return nil
			})
		}
	}
	return rooms
}

// resumeRoom reconnects s to gateway gw with its newest resume token and
// checks the welcome: resumed, the same connection, and the room listed
// with every member that stays and no stranger (a gone member may still be
// listed: its grace has not run out).
func resumeRoom(s *seat, gw int, room []*seat) error {
	w, err := s.c.dial(gw, true)
	if err != nil {
		return err
	}
	if !w.Resumed || w.Conn != s.conn {
		return fmt.Errorf("%s: resume on gateway%d: resumed=%v conn %q (was %q)", s.c, gw, w.Resumed, w.Conn, s.conn)
	}
	if len(w.Rooms) != 1 || w.Rooms[0].Room != s.room {
		return fmt.Errorf("%s: resumed welcome lists rooms %v, want %q", s.c, w.Rooms, s.room)
	}
	listed := w.Rooms[0].Members
	for _, o := range room {
		in := slices.Contains(listed, messages.RoomMember{User: o.c.user, Conn: o.conn})
		if o.stays() && !in {
			return fmt.Errorf("%s: resumed welcome lists %q with %v, without %s", s.c, s.room, listed, o.c)
		}
	}
	if len(listed) > len(room) {
		return fmt.Errorf("%s: resumed welcome lists %q with %v: more than its %d members", s.c, s.room, listed, len(room))
	}
	return nil
}

// stayerPairs is every ordered pair of two members of one room that stay.
func stayerPairs(rooms map[string][]*seat) [][2]*seat {
	var ps [][2]*seat
	for _, rs := range rooms {
		for _, a := range rs {
			for _, b := range rs {
				if a != b && a.stays() && b.stays() {
					ps = append(ps, [2]*seat{a, b})
				}
			}
		}
	}
	return ps
}

// leaveAll has the remaining members of each room leave one after the
// other; each time, every member still in must get member_left{left}.
func leaveAll(t *testing.T, r *row, rooms map[string][]*seat) {
	t.Helper()
	for id, rs := range rooms {
		var in []*seat
		for _, s := range rs {
			if s.stays() {
				in = append(in, s)
			}
		}
		for len(in) > 0 {
			s := in[0]
			in = in[1:]
			if _, err := s.c.roomRequest(messages.TypeLeave, id, 10*time.Second); err != nil {
				t.Errorf("leave: %v", err)
				continue
			}
			for _, o := range in {
				if err := poll(slack, func() error {
					if _, seen := o.c.leftSeen(id, s.conn); !seen {
						return fmt.Errorf("%s: no member_left about %s's leave of %q", o.c, s.c, id)
					}
					return nil
				}); err != nil {
					t.Errorf("LOST MEMBER_LEFT: %v", err)
					r.lostEnded++
				} else if l, _ := o.c.leftSeen(id, s.conn); l.reason != messages.LeftLeft {
					t.Errorf("%s: member_left about %s with reason %s, want left", o.c, s.c, l.reason)
				}
			}
		}
	}
}

// probeJoin has every one of cs, each in no room, join the new room id
// (at most roomMax of them) and then leave it. A refusal with
// invalid_state (the user still held by a room) or room_full (a place
// still taken) is a ghost busy.
func probeJoin(t testing.TB, r *row, id string, cs []*client) {
	t.Helper()
	for _, c := range cs {
		refusal, err := c.join(id, 10*time.Second)
		switch code := errorCode(refusal); {
		case code == messages.CodeInvalidState || code == messages.CodeRoomFull:
			t.Errorf("GHOST BUSY: %v", err)
			r.ghostBusy++
		case err != nil:
			t.Errorf("probe join: %v", err)
		}
	}
	for _, c := range cs {
		if c.view(id) != nil {
			if _, err := c.roomRequest(messages.TypeLeave, id, 10*time.Second); err != nil {
				t.Errorf("probe leave: %v", err)
			}
		}
	}
}
