package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/bench"
)

// benchFlags are the flags of `callmesh bench` besides the config keys.
type benchFlags struct {
	scenario, target, urls, tokenURL *string
	json                             *bool
	jsonOut, cpuProfile              *string
	o                                bench.Options
}

const benchArgs = " connect|calls|relay [--url ws://…/ws,…] [--target callmesh|peerjs] [--sweep] [--json]"

func addBenchFlags(fs *flag.FlagSet) *benchFlags {
	d := bench.DefaultOptions()
	bf := &benchFlags{
		scenario:   fs.String("scenario", "", "connect, calls or relay (or the first argument)"),
		target:     fs.String("target", bench.TargetCallmesh, "callmesh, or peerjs (a PeerJS server: connect and relay)"),
		urls:       fs.String("url", "", "comma-separated WebSocket URLs (default: the gateways of callmesh dev --gateways 2, or PeerJS on :9000)"),
		tokenURL:   fs.String("token-url", "", "where to get tokens when jwt.secret is not set (default: /dev/token of the first URL's host)"),
		json:       fs.Bool("json", false, "print the report as JSON"),
		jsonOut:    fs.String("json-out", "", "also write the report as JSON to this file"),
		cpuProfile: fs.String("cpuprofile", "", "write the load generator's own CPU profile to this file (to check it is not the bottleneck)"),
	}
	o := &bf.o
	fs.IntVar(&o.Conns, "conns", d.Conns, "connect: connections to open")
	fs.IntVar(&o.Dialers, "dialers", d.Dialers, "dials in flight at once")
	fs.IntVar(&o.Sources, "sources", d.Sources, "loopback source addresses to dial from, 127.0.0.1 … 127.0.0.N (local servers only)")
	fs.IntVar(&o.Pairs, "pairs", d.Pairs, "calls, relay: pairs of connections, caller and callee on different gateways")
	fs.Float64Var(&o.Rate, "rate", d.Rate, "calls, relay: calls or signals per second in all (a sweep's first step)")
	fs.IntVar(&o.DataBytes, "size", d.DataBytes, "relay: bytes of each signal's data")
	fs.BoolVar(&o.Acked, "acked", false, "relay: give each signal an id, so the gateway acks it (once NATS has it), and report the ack latency")
	fs.DurationVar(&o.Duration, "duration", d.Duration, "calls, relay: measured time of each step")
	fs.DurationVar(&o.Warmup, "warmup", d.Warmup, "calls, relay: load before measuring, in each step")
	fs.DurationVar(&o.Drain, "drain", d.Drain, "wait this long for what is in flight after a step's schedule ends")
	fs.DurationVar(&o.Timeout, "timeout", d.Timeout, "bound of one dial or one step of a call")
	fs.DurationVar(&o.Settle, "settle", d.Settle, "connect: wait before reading the server's memory")
	fs.DurationVar(&o.Hold, "hold", 0, "connect: keep the connections open this long at the end")
	fs.BoolVar(&o.Sweep, "sweep", false, "step the rate up until a step misses the criterion (connect: open the connections in 4 steps)")
	fs.Float64Var(&o.SweepFactor, "sweep-factor", d.SweepFactor, "each sweep step's rate is the last one's times this")
	fs.IntVar(&o.SweepSteps, "sweep-steps", d.SweepSteps, "at most this many rates in a sweep")
	fs.IntVar(&o.SweepRetries, "sweep-retries", 1, "run a rate that missed the criterion again this many times before the sweep stops")
	fs.DurationVar(&o.MaxP99, "max-p99", d.MaxP99, "the criterion: p99 at most this, with no errors and nothing lost")
	fs.IntVar(&o.PID, "pid", 0, "the server's process id, for its memory and CPU (default: the process listening on the first URL's port, when local)")
	return bf
}

// benchScenario takes the scenario from the first argument, so that
// `callmesh bench relay --rate 1000` parses like `callmesh bench --scenario relay --rate 1000`.
func benchScenario(args []string) (scenario string, rest []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

// runBench runs the load generator against the gateways (or PeerJS) and
// prints its report.
func runBench(ctx context.Context, cfg *Config, bf *benchFlags, stdout, stderr io.Writer) error {
	o := bf.o
	o.Scenario, o.Target = *bf.scenario, *bf.target
	if o.Scenario == "" {
		return configErrorf("which scenario: connect, calls or relay (see callmesh bench -h)")
	}
	switch {
	case *bf.urls != "":
		o.URLs = strings.Split(*bf.urls, ",")
	case o.Target == bench.TargetPeerJS:
		o.URLs = []string{"ws://127.0.0.1:9000/peerjs"}
	default:
		o.URLs = []string{"ws://127.0.0.1:8080/ws", "ws://127.0.0.1:8081/ws"}
	}
	if o.Target == bench.TargetCallmesh {
		tok, err := benchTokens(cfg, *bf.tokenURL, o.URLs[0])
		if err != nil {
			return err
		}
		o.Token = tok
	}
	if isTerminal(stderr) {
		o.Progress = stderr
	}
	if *bf.cpuProfile != "" {
		f, err := os.Create(*bf.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, o)
	if rep != nil && len(rep.Steps) > 0 {
		var werr error
		if *bf.json {
			werr = bench.WriteJSON(stdout, rep)
		} else {
			werr = bench.WriteTable(stdout, rep)
		}
		if *bf.jsonOut != "" {
			werr = errors.Join(werr, writeJSONFile(*bf.jsonOut, rep))
		}
		if err == nil {
			err = werr
		}
	}
	return err
}

// writeJSONFile writes rep to path as JSON.
func writeJSONFile(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(bench.WriteJSON(f, rep), f.Close())
}

// benchTokens signs tokens with the configured key (jwt.secret, or
// jwt.signing_key_file), or, when there is none, fetches them from a dev
// gateway's /dev/token.
func benchTokens(cfg *Config, tokenURL, firstURL string) (bench.TokenFunc, error) {
	if cfg.JWT.Secret != "" || cfg.JWT.SigningKeyFile != "" {
		m, err := cfg.signer("bench tokens")
		if err != nil {
			return nil, err
		}
		return func(_ context.Context, user string) (string, error) {
			return gateway.Mint(m, user, 2*time.Hour)
		}, nil
	}
	if tokenURL == "" {
		u, err := url.Parse(firstURL)
		if err != nil {
			return nil, configErrorf("--url: %w", err)
		}
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		tokenURL = scheme + "://" + u.Host + "/dev/token"
	}
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ctx context.Context, user string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, tokenURL+"?user="+url.QueryEscape(user), nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("%w (set jwt.secret to the gateway's, or run callmesh dev)", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("%s: %s (set jwt.secret to the gateway's, or run callmesh dev)", tokenURL, resp.Status)
		}
		var body struct{ Token string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return "", fmt.Errorf("%s: %w", tokenURL, err)
		}
		return body.Token, nil
	}, nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
