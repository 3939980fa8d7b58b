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
//   - calls in flight: calls that were ringing or accepted at the moment
//     the fault was injected.
//   - calls continued: of the accepted calls the fault should not end, how
//     many continued, as got/want: neither party received an `ended`, and
//     after the fault each party received new signals from the other.
//   - calls ended with the correct reason: of the calls that had to end
//     (a party gone for good, a ring timeout, a hangup during the run), how
//     many ended for every party still connected with the reason the
//     protocol prescribes, as got/want (— when none had to end).
//   - double booking: `incoming` or `accepted` delivered to a user already
//     party to another live call, or an invite to a user known to be in a
//     call that rang instead of ending with `busy`.
//   - ghost busy: once every call had ended, invites between idle users
//     (in both roles) that ended with `busy` or were refused with
//     `invalid_state`.
//   - lost `ended`: calls over on the server (a peer gone past the grace, a
//     hangup, a ring timeout) where a connected party received no `ended`
//     within the bound: presence TTL + resume grace + slack for a dead
//     peer, the ring timeout + slack for no answer, the slack for a hangup.
//   - lost signal: signals the sender's gateway acknowledged (each carries
//     an `id`) that the peer never received, or received out of order,
//     in calls that were not ended. Signals written but never acknowledged
//     (the sender's own connection died) are not owed.
//   - time: the fault's detection or recovery time, named in the cell
//     (the largest over all affected calls).
//
// A fault whose test failed for any reason (also one outside these
// columns, such as a resume refused or a missing goaway) is marked
// **FAIL** in the table.
type row struct {
	fault                            string
	inFlight                         int
	continued, continuedWant         int
	endedOK, endedWant               int
	doubleBook, ghostBusy, lostEnded int
	lostSignal                       int
	time                             string
	notes                            []string
}

// wrong is the number of wrong outcomes of r.
func (r *row) wrong() int { return r.doubleBook + r.ghostBusy + r.lostEnded + r.lostSignal }

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
	b.WriteString("| fault | calls in flight | calls continued | calls ended with the correct reason | double booking | ghost busy | lost `ended` | lost signal | time to detect / recover |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range table {
		ended := "—"
		if r.endedWant > 0 {
			ended = fmt.Sprintf("%d/%d", r.endedOK, r.endedWant)
		}
		cont := "—"
		if r.continuedWant > 0 {
			cont = fmt.Sprintf("%d/%d", r.continued, r.continuedWant)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %d | %d | %d | %s |\n",
			r.fault, r.inFlight, cont, ended, r.doubleBook, r.ghostBusy, r.lostEnded, r.lostSignal, r.time)
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
