package router

import "slices"

// Room is the record of one room, stored under messages.RoomKey(ID)
// (docs/rooms.md). Every write is a compare-and-set on its revision, so the
// record alone decides who is in the room.
type Room struct {
	ID string `json:"id"`
	// Members are the member connections in join order, oldest first: the
	// newer member of each pair makes the offer (PROTOCOL.md §14.8).
	Members []Member `json:"members"`
	// NextSeq is the join number the next member gets; never reused.
	NextSeq uint64 `json:"next_seq"`
	// Max is rooms.max_members when the room was created.
	Max        int  `json:"max"`
	Locked     bool `json:"locked,omitempty"`
	InviteOnly bool `json:"invite_only,omitempty"`
	// Invited are the open rings into the room: each lets its user join
	// without a grant until it is answered or ends.
	Invited []Invitation `json:"invited,omitempty"`
	// Departed are the last departures (at most maxDeparted), so that a
	// repeat of the leave or kick that made one publishes its member_left
	// again (its router may have died before publishing).
	Departed []Departure `json:"departed,omitempty"`
	// EmptySince is when the last member left (Unix ms); 0 while anyone is
	// in. The room ends EmptyTimeout (ms) later unless someone joins.
	EmptySince   int64 `json:"empty_since_ms,omitempty"`
	EmptyTimeout int64 `json:"empty_timeout_ms"`
	// CreatedMS is when the room was made (Unix ms): with the id, it names
	// this room apart from an earlier room of the same id in its events.
	CreatedMS int64 `json:"created_ms,omitempty"`
}

// Member is one member connection of a room.
type Member struct {
	User string `json:"user"`
	Conn string `json:"conn"`
	// Gateway held Conn when it last asked (join, resume): a delivery to
	// it is posted there first.
	Gateway string `json:"gw,omitempty"`
	// Seq is the member's join number in the room.
	Seq uint64 `json:"seq"`
}

// Invitation is an open ring of User into a room, made by member conn By.
type Invitation struct {
	User string `json:"user"`
	Call string `json:"call"`
	By   string `json:"by"`
}

// Departure is a member that left, and why (a member_left reason).
type Departure struct {
	Member Member `json:"member"`
	Reason string `json:"reason"`
	// By is the connection whose request removed it (the member itself,
	// or the kicking moderator's); empty for a drop.
	By string `json:"by,omitempty"`
}

// maxDeparted bounds Room.Departed.
const maxDeparted = 16

// maxInvited bounds Room.Invited, per place in the room.
const maxInvitedPerPlace = 2

// member returns the index of conn among r's members, or -1.
func (r *Room) member(conn string) int {
	if r == nil {
		return -1
	}
	return slices.IndexFunc(r.Members, func(m Member) bool { return m.Conn == conn })
}

// userIn returns the index of a member connection of user, or -1.
func (r *Room) userIn(user string) int {
	if r == nil {
		return -1
	}
	return slices.IndexFunc(r.Members, func(m Member) bool { return m.User == user })
}

// invited reports whether user has an open ring into r.
func (r *Room) invited(user string) bool {
	if r == nil {
		return false
	}
	return slices.ContainsFunc(r.Invited, func(inv Invitation) bool { return inv.User == user })
}

// clone returns a deep copy of r.
func (r *Room) clone() *Room {
	if r == nil {
		return nil
	}
	c := *r
	c.Members = slices.Clone(r.Members)
	c.Invited = slices.Clone(r.Invited)
	c.Departed = slices.Clone(r.Departed)
	return &c
}
