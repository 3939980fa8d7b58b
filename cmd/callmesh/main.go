// Command callmesh runs the callmesh WebRTC signaling mesh: gateways that
// hold the clients' WebSockets and routers that own the calls, talking over
// NATS. `callmesh dev` runs all of it in one process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	os.Exit(Run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// commands are the subcommands that take configuration, with their
// one-line descriptions.
var commands = []struct{ name, args, desc string }{
	{"dev", "", "everything in one process: embedded NATS, a router and dev.gateways gateways"},
	{"gateway", "", "serve one WebSocket gateway on http.addr, connected to nats.url"},
	{"router", "", "run one router (calls, ring timeouts, dead-gateway cleanup) on nats.url"},
	{"events", " [--since 1h | --all] [--follow=false]", "print the call and room events stream as JSON lines (docs/events.md)"},
	{"webhook", "", "POST every call and room event to webhook.url, signed with webhook.secret, retrying with backoff"},
	{"turn", "", "run the built-in TURN server (turn.*) for clients behind firewalls and symmetric NATs"},
	{"token", " --user NAME [--ttl 1h] [--kid ID]", "mint a JWT with the configured key and print it"},
	{"nats-auth", " [--gateway-names " + defaultGatewayNames + "]", "print the NATS server's authorization config: one login for the routers and one per named gateway"},
	{"bench", benchArgs, "load generator: connections, calls or signal relay against gateways (or PeerJS), with latency percentiles and the server's cost"},
}

func usage(w io.Writer) {
	fmt.Fprint(w, "callmesh — WebRTC call signaling mesh on NATS\n\nusage: callmesh <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.desc)
	}
	fmt.Fprint(w, `  version   print the version
  help      this text; "callmesh help config" prints the configuration reference

Every command takes --config FILE (YAML; or $CALLMESH_CONFIG) and one flag per
configuration key, named like it: callmesh dev --call.ring_timeout 10s.
Precedence: defaults < file < CALLMESH_* environment < flags.
`)
}

// Run runs the command line args (without the program name) with the
// environment environ, and returns the exit code: 0 on success (also after
// ctx is cancelled, the way to stop a server), 2 for usage and config
// errors, 1 for anything else.
func Run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		if len(args) > 0 && args[0] == "config" {
			writeReference(stdout)
		} else {
			usage(stdout)
		}
		return 0
	case "version":
		printVersion(stdout)
		return 0
	}
	err := runCommand(ctx, cmd, args, environ, stdout, stderr)
	var ce configError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "callmesh %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "callmesh %s: %v\n", cmd, err)
		return 1
	}
}

// printCommandFlags lists the flags of fs that are the command's own, not
// configuration keys.
func printCommandFlags(w io.Writer, fs *flag.FlagSet) {
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if _, key := byKey[f.Name]; key || flagAliases[f.Name] != "" || f.Name == "config" {
			return
		}
		if first {
			fmt.Fprint(w, "\nCommand flags:\n")
			first = false
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s\n        %s%s\n", f.Name, f.Usage, def)
	})
}

// runCommand parses the flags of cmd, loads the config and runs cmd.
func runCommand(ctx context.Context, cmd string, args, environ []string, stdout, stderr io.Writer) error {
	var desc, extra string
	for _, c := range commands {
		if c.name == cmd {
			desc, extra = c.desc, c.args
		}
	}
	if desc == "" {
		usage(stderr)
		return configErrorf("unknown command %q", cmd)
	}
	fs := flag.NewFlagSet("callmesh "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by Run, help below
	fv := addConfigFlags(fs)
	var tf tokenFlags
	var gatewayNames *string
	var bf *benchFlags
	var ef eventsFlags
	switch cmd {
	case "events":
		ef = addEventsFlags(fs)
	case "token":
		tf = addTokenFlags(fs)
	case "nats-auth":
		gatewayNames = addNATSAuthFlags(fs)
	case "bench":
		bf = addBenchFlags(fs)
		var scenario string
		if scenario, args = benchScenario(args); scenario != "" {
			*bf.scenario = scenario
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "usage: callmesh %s%s [flags]\n\n%s.\n\n", cmd, extra, desc)
			fmt.Fprint(stdout, "Flags: --config FILE, and --KEY VALUE for every configuration key (\"callmesh help config\");\n--http is short for --http.addr, --gateways for --dev.gateways.\n")
			printCommandFlags(stdout, fs)
			return err
		}
		return configErrorf("%w (see callmesh %s -h)", err, cmd)
	}
	if fs.NArg() > 0 {
		return configErrorf("unexpected argument %q (see callmesh %s -h)", fs.Arg(0), cmd)
	}
	cfg, err := loadConfig(fv, environ)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	switch cmd {
	case "dev":
		return runDev(ctx, cfg, log, stdout)
	case "gateway":
		return runGateway(ctx, cfg, log)
	case "router":
		return runRouter(ctx, cfg, log)
	case "turn":
		return runTURN(ctx, cfg, log)
	case "events":
		return runEvents(ctx, cfg, ef, log, stdout)
	case "webhook":
		return runWebhook(ctx, cfg, log)
	case "nats-auth":
		return runNATSAuth(cfg, *gatewayNames, stdout)
	case "bench":
		return runBench(ctx, cfg, bf, stdout, stderr)
	default:
		return runToken(cfg, tf, stdout)
	}
}
