package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteJSON writes the reports as one JSON document.
func WriteJSON(w io.Writer, reps ...*Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(reps) == 1 {
		return enc.Encode(reps[0])
	}
	return enc.Encode(reps)
}

// WriteTable writes rep as a table, one row per step, then the sweep's
// outcome and, if a gateway's rate limits refused load, how to lift them.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	latency := map[string]string{ScenarioConnect: "welcome", ScenarioCalls: "setup", ScenarioRelay: "relay"}[rep.Scenario]
	acked := len(rep.Steps) > 0 && rep.Steps[0].Ack != nil // relay --acked
	ackCols := ""
	if acked {
		ackCols = "ack p50\tack p99\tacks lost\t"
	}
	switch rep.Scenario {
	case ScenarioConnect:
		fmt.Fprintln(tw, "target\tstep\tconns\tconnects/s\t"+latency+" p50\tp90\tp99\tp99.9\tmax\tfailed\tserver RSS\tper conn\tpass\t")
	case ScenarioCalls:
		fmt.Fprintln(tw, "target\tstep\tpairs\trate/s\tcalls/s\tcalls\tring p50\tring p99\t"+latency+" p50\tp90\tp99\tp99.9\tmax\tfailed\tserver CPU/call\tCPU\tpass\t")
	default:
		fmt.Fprintln(tw, "target\tstep\tpairs\trate/s\tsent/s\tsignals\t"+latency+" p50\tp90\tp99\tp99.9\tmax\tsend lag p99\tlost\t"+ackCols+"server CPU/signal\tCPU\tpass\t")
	}
	for _, s := range rep.Steps {
		l := s.Latency
		lat := fmt.Sprintf("%.2fms\t%.2fms\t%.2fms\t%.2fms\t%.2fms", l.P50, l.P90, l.P99, l.P999, l.Max)
		pass := "yes"
		if !s.Pass {
			pass = "no"
		}
		switch rep.Scenario {
		case ScenarioConnect:
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%d\t%s\t%s\t%s\t\n", s.Target, s.Step, s.Conns, s.Achieved, lat, s.Failed,
				orDash(s.ServerPID, fmt.Sprintf("%.1f MiB", s.ServerRSSMiB)), orDash(s.ServerPID, fmt.Sprintf("%.1f KiB", s.ServerRSSPerConnKiB)), pass)
		case ScenarioCalls:
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%d\t%.2fms\t%.2fms\t%s\t%d\t%s\t%s\t%s\t\n", s.Target, s.Step, s.Conns/2, fmtRate(s.Rate), s.Achieved, s.Ops,
				s.Ring.P50, s.Ring.P99, lat, s.Failed,
				orDash(s.ServerPID, fmt.Sprintf("%.0f µs", s.ServerCPUPerOpUs)), orDash(s.ServerPID, fmt.Sprintf("%.0f%%", 100*s.ServerCPUUtil)), pass)
		default:
			acks := ""
			if s.Ack != nil {
				acks = fmt.Sprintf("%.2fms\t%.2fms\t%d\t", s.Ack.P50, s.Ack.P99, s.AcksLost)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%d\t%s\t%.2fms\t%d\t%s%s\t%s\t%s\t\n", s.Target, s.Step, s.Conns/2, fmtRate(s.Rate), s.Achieved, s.Ops,
				lat, s.SendLag.P99, s.Lost, acks,
				orDash(s.ServerPID, fmt.Sprintf("%.1f µs", s.ServerCPUPerOpUs)), orDash(s.ServerPID, fmt.Sprintf("%.0f%%", 100*s.ServerCPUUtil)), pass)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range rep.Steps {
		if len(s.Errors) > 0 {
			fmt.Fprintf(w, "step %d errors: %s\n", s.Step, formatErrors(s.Errors))
		}
	}
	if len(rep.Steps) > 1 {
		unit := "/s"
		if rep.Scenario == ScenarioConnect {
			unit = " connections"
		}
		if rep.Best > 0 {
			fmt.Fprintf(w, "highest sustained (%s): %s%s\n", rep.Criterion, fmtRate(rep.Best), unit)
		} else {
			fmt.Fprintf(w, "no step met the criterion (%s)\n", rep.Criterion)
		}
	}
	if rep.RateLimited {
		fmt.Fprint(w, RateLimitHint)
	}
	return nil
}

// RateLimitHint explains rate_limited refusals: the gateway's limits are a
// policy against abuse, not its capacity.
const RateLimitHint = `note: the gateway refused load with its rate limits (HTTP 429, error rate_limited or close 1008).
They protect it from abusive clients; to measure its capacity, run it with them lifted:
  CALLMESH_LIMITS_MESSAGE_RATE=1e6 CALLMESH_LIMITS_MESSAGE_BURST=1000000 \
  CALLMESH_LIMITS_BYTE_RATE=1e12 CALLMESH_LIMITS_BYTE_BURST=1000000000 \
  CALLMESH_LIMITS_INVITE_RATE=1e6 CALLMESH_LIMITS_INVITE_BURST=1000000 \
  CALLMESH_LIMITS_ADDR_CONNECT_RATE=0 CALLMESH_LIMITS_USER_CONNECT_RATE=0 callmesh dev --gateways 2
`

func orDash(pid int, s string) string {
	if pid == 0 {
		return "-"
	}
	return s
}
