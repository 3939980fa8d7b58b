//go:build faults

package faults

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// row is one fault's line of the table. Columns:
//
//   - fault: what was done.
//   - in flight: calls that were ringing or accepted at the moment the
//     fault was injected; for a room row, as the cell says: room members
//     (a gateway crash) or room requests awaiting their answer (a router
//     crash).
//   - continued: of the accepted calls the fault should not end, how
//     many continued, as got/want: neither party received an `ended`, and
//     after the fault each party received new signals from the other. For
//     a room row, of the memberships the fault should not end: nobody got
//     `member_left` about the member, its view of the room is the room,
//     and signal flows between it and every other member after the fault
//     (a gateway crash); or of the joins answered `joined`: every member
//     of the room has the joiner and the joiner has them (a router crash).
//   - ended with the correct reason: of the calls that had to end (a party
//     gone for good, a ring timeout, a hangup during the run), how many
//     ended for every party still connected with the reason the protocol
//     prescribes, as got/want (— when none had to end). For a room row,
//     of the members that went (gone with their gateway; a leave), how
//     many every remaining member was told of with `member_left` and the
//     prescribed reason (`disconnected`; `left`).
//   - double booking: `incoming` or `accepted` delivered to a user already
//     party to another live call, or an invite to a user known to be in a
//     call that rang instead of ending with `busy`. For rooms: a room with
//     more members than rooms.max_members, in a `joined` list, in the
//     answers to the joins, or in a member's view once the requests are
//     answered. (Before that a view may hold one more for a moment: the
//     member events of two changes that two routers made at once can
//     arrive in either order, a newcomer's before the member_left of the
//     member whose place it took; the row's log counts those.)
//   - ghost busy: once every call had ended, invites between idle users
//     (in both roles) that ended with `busy` or were refused with
//     `invalid_state`. For rooms: a join of a user in no room (it left,
//     was refused, or its session ended) refused with `invalid_state`, or
//     with `room_full` by a room with places.
//   - lost `ended`: calls over on the server (a peer gone past the grace, a
//     hangup, a ring timeout) where a connected party received no `ended`
//     within the bound: presence TTL + resume grace + slack for a dead
//     peer, the ring timeout + slack for no answer, the slack for a hangup.
//     For rooms, the same for `member_left`: a remaining member not told
//     of a member gone for good (or of a leave) within the bound.
//   - lost signal: signals the sender's gateway acknowledged (each carries
//     an `id`) that the peer never received, or received out of order,
//     in calls that were not ended. Signals written but never acknowledged
//     (the sender's own connection died) are not owed. Room signal is not
//     replayed across a gateway crash (PROTOCOL.md §14.11): between a
//     member on the crashed gateway and another, only what was sent after
//     it resumed is owed; between members elsewhere, everything.
//   - wrong room event: what a room client would notice as wrong: a
//     second answer to one join or leave, or none; `joined` for no join;
//     `member_joined` for a member it has; `member_left` for one it does
//     not have, or for a member that is still there; a view of the room
//     that is not the room once requests are answered; a room signal
//     between two members refused.
//   - time: the fault's detection or recovery time, named in the cell
//     (the largest over all affected calls or members).
//
// A fault whose test failed for any reason (also one outside these
// columns, such as a resume refused or a missing goaway) is marked
// **FAIL** in the table.
type row struct {
	fault                            string
	inFlight                         int
	inFlightWhat                     string // what inFlight counts, when not calls
	continued, continuedWant         int
	endedOK, endedWant               int
	doubleBook, ghostBusy, lostEnded int
	lostSignal                       int
	wrongRoom                        int
	time                             string
	notes                            []string
}

// wrong is the number of wrong outcomes of r.
func (r *row) wrong() int {
	return r.doubleBook + r.ghostBusy + r.lostEnded + r.lostSignal + r.wrongRoom
}

// ok reports whether r is what the protocol promises.
func (r *row) ok() bool {
	return r.wrong() == 0 && r.continued == r.continuedWant && r.endedOK == r.endedWant
}

// tableMu guards table; rows are added as faults finish.
var (
	tableMu sync.Mutex
	table   []*row
)

func addRow(r *row) {
	tableMu.Lock()
	defer tableMu.Unlock()
	table = append(table, r)
}

// markdown is the table so far.
func markdown() string {
	tableMu.Lock()
	defer tableMu.Unlock()
	var b strings.Builder
	b.WriteString("| fault | in flight | continued | ended with the correct reason | double booking | ghost busy | lost `ended` | lost signal | wrong room event | time to detect / recover |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range table {
		ended := "—"
		if r.endedWant > 0 {
			ended = fmt.Sprintf("%d/%d", r.endedOK, r.endedWant)
		}
		cont := "—"
		if r.continuedWant > 0 {
			cont = fmt.Sprintf("%d/%d", r.continued, r.continuedWant)
		}
		what := r.inFlightWhat
		if what == "" {
			what = "calls"
		}
		fmt.Fprintf(&b, "| %s | %d %s | %s | %s | %d | %d | %d | %d | %d | %s |\n",
			r.fault, r.inFlight, what, cont, ended, r.doubleBook, r.ghostBusy, r.lostEnded, r.lostSignal, r.wrongRoom, r.time)
	}
	return b.String()
}

// ms formats a duration for the time column.
func ms(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
