package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/embednats"
	"github.com/callmesh/callmesh/router"
)

// load parses args as a command's flags and loads the config with environ.
func load(t *testing.T, args, environ []string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fv := addConfigFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	return loadConfig(fv, environ)
}

func mustLoad(t *testing.T, args, environ []string) *Config {
	t.Helper()
	cfg, err := load(t, args, environ)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "callmesh.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
call:
  ring_timeout: 20s
nats:
  prefix: fromfile
limits.send_queue: 100
ice:
  servers:
    - urls: ["turn:file.example.com:3478"]
      username: u
      credential: c
`)
	env := []string{
		"CALLMESH_CALL_RING_TIMEOUT=15s",
		"CALLMESH_NATS_PREFIX=fromenv",
		`CALLMESH_ICE_SERVERS=[{"urls":["turn:env.example.com"],"secret":"s","ttl":"1h"}]`,
	}
	flags := []string{
		"--call.ring_timeout", "5s",
		"--nats.prefix=fromflag",
		"--ice.servers", `[{"urls":"stun:flag.example.com"}]`,
	}
	tests := []struct {
		name      string
		args, env []string
		ring      time.Duration
		prefix    string
		ice       []gateway.ICEServerConfig
		sendQueue int
	}{
		{"defaults", nil, nil, 30 * time.Second, "callmesh",
			[]gateway.ICEServerConfig{{URLs: []string{"stun:stun.l.google.com:19302"}}}, 256},
		{"file", []string{"--config", file}, nil, 20 * time.Second, "fromfile",
			[]gateway.ICEServerConfig{{URLs: []string{"turn:file.example.com:3478"}, Username: "u", Credential: "c"}}, 100},
		{"file from CALLMESH_CONFIG", nil, []string{"CALLMESH_CONFIG=" + file}, 20 * time.Second, "fromfile",
			[]gateway.ICEServerConfig{{URLs: []string{"turn:file.example.com:3478"}, Username: "u", Credential: "c"}}, 100},
		{"env over file", []string{"--config", file}, env, 15 * time.Second, "fromenv",
			[]gateway.ICEServerConfig{{URLs: []string{"turn:env.example.com"}, Secret: "s", TTL: time.Hour}}, 100},
		{"flags over env", append([]string{"--config", file}, flags...), env, 5 * time.Second, "fromflag",
			[]gateway.ICEServerConfig{{URLs: []string{"stun:flag.example.com"}}}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLoad(t, tt.args, tt.env)
			if cfg.Call.RingTimeout != tt.ring {
				t.Errorf("call.ring_timeout = %v, want %v", cfg.Call.RingTimeout, tt.ring)
			}
			if cfg.NATS.Prefix != tt.prefix {
				t.Errorf("nats.prefix = %q, want %q", cfg.NATS.Prefix, tt.prefix)
			}
			if !reflect.DeepEqual(cfg.ICE.Servers, tt.ice) {
				t.Errorf("ice.servers = %+v, want %+v", cfg.ICE.Servers, tt.ice)
			}
			if cfg.Limits.SendQueue != tt.sendQueue {
				t.Errorf("limits.send_queue = %d, want %d (set in the file only)", cfg.Limits.SendQueue, tt.sendQueue)
			}
		})
	}
}

func TestEnvKeysWithUnderscores(t *testing.T) {
	cfg := mustLoad(t, nil, []string{
		"CALLMESH_CALL_RING_TIMEOUT=7s",
		"CALLMESH_JWT_MAX_TOKEN_BYTES=100",
		"CALLMESH_NATS_NKEY_SEED_FILE=/seed",
		"CALLMESH_DEV_NATS_PORT=0",
		"CALLMESH_HTTP_ORIGIN_PATTERNS=a.example.com, *.b.example.com",
		"HOME=/root", "callmesh_lowercase=ignored",
	})
	if cfg.Call.RingTimeout != 7*time.Second || cfg.JWT.MaxTokenBytes != 100 || cfg.NATS.NKeySeed != "/seed" || cfg.Dev.NATSPort != 0 {
		t.Errorf("got ring %v, max token %d, seed %q, nats port %d", cfg.Call.RingTimeout, cfg.JWT.MaxTokenBytes, cfg.NATS.NKeySeed, cfg.Dev.NATSPort)
	}
	if want := []string{"a.example.com", "*.b.example.com"}; !reflect.DeepEqual(cfg.HTTP.OriginPatterns, want) {
		t.Errorf("origin patterns = %q, want %q", cfg.HTTP.OriginPatterns, want)
	}
	cfg = mustLoad(t, []string{"--http.origin_patterns", `["x.example.com"]`}, nil)
	if want := []string{"x.example.com"}; !reflect.DeepEqual(cfg.HTTP.OriginPatterns, want) {
		t.Errorf("origin patterns from JSON = %q, want %q", cfg.HTTP.OriginPatterns, want)
	}
}

func TestShortFlags(t *testing.T) {
	cfg := mustLoad(t, []string{"--http", "127.0.0.1:9000", "--gateways", "3"}, nil)
	if cfg.HTTP.Addr != "127.0.0.1:9000" || cfg.Dev.Gateways != 3 {
		t.Errorf("http.addr %q, dev.gateways %d", cfg.HTTP.Addr, cfg.Dev.Gateways)
	}
}

func TestICEServersFromEnv(t *testing.T) {
	cfg := mustLoad(t, nil, []string{`CALLMESH_ICE_SERVERS=[
		{"urls":["turn:turn.example.com:3478","turns:turn.example.com:5349"],"secret":"s3cret","ttl":"30m"},
		{"urls":["stun:stun.example.com"],"username":"u","credential":"c"}]`})
	want := []gateway.ICEServerConfig{
		{URLs: []string{"turn:turn.example.com:3478", "turns:turn.example.com:5349"}, Secret: "s3cret", TTL: 30 * time.Minute},
		{URLs: []string{"stun:stun.example.com"}, Username: "u", Credential: "c"},
	}
	if !reflect.DeepEqual(cfg.ICE.Servers, want) {
		t.Errorf("ice.servers = %+v, want %+v", cfg.ICE.Servers, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name      string
		args, env []string
		file      string
		want      []string // in the error
	}{
		{"unknown env", nil, []string{"CALLMESH_CALL_RING_TIMOUT=5s"}, "", []string{"CALLMESH_CALL_RING_TIMOUT"}},
		{"bad duration flag", []string{"--call.ring_timeout", "soon"}, nil, "", []string{"call.ring_timeout", "flag", `"soon"`}},
		{"bad duration env", nil, []string{"CALLMESH_PRESENCE_TTL=3"}, "", []string{"presence.ttl", "CALLMESH_PRESENCE_TTL"}},
		{"duration without unit in file", nil, nil, "call:\n  resume_grace: 10\n", []string{"call.resume_grace", "no unit"}},
		{"negative duration", []string{"--jwt.leeway", "-1s"}, nil, "", []string{"jwt.leeway", "negative"}},
		{"negative number", []string{"--router.workers", "-1"}, nil, "", []string{"router.workers", "negative"}},
		{"not a number", nil, []string{"CALLMESH_LIMITS_SEND_QUEUE=lots"}, "", []string{"limits.send_queue"}},
		{"log level", []string{"--log.level", "loud"}, nil, "", []string{"log.level"}},
		{"log format", []string{"--log.format", "xml"}, nil, "", []string{"log.format"}},
		{"ice not json", nil, []string{"CALLMESH_ICE_SERVERS=stun:x"}, "", []string{"ice.servers"}},
		{"ice unknown field", []string{"--ice.servers", `[{"url":"stun:x"}]`}, nil, "", []string{"ice.servers", "url"}},
		{"ice without urls", []string{"--ice.servers", `[{"username":"u"}]`}, nil, "", []string{"ice.servers", "no urls"}},
		{"unknown file key", nil, nil, "call:\n  ring_timout: 5s\n", []string{"call.ring_timout"}},
		{"tls cert without key", []string{"--nats.tls_cert", "c.pem"}, nil, "", []string{"nats.tls_key"}},
		{"two nats logins", nil, []string{"CALLMESH_NATS_TOKEN=t", "CALLMESH_NATS_CREDS=c"}, "", []string{"nats.creds"}},
		{"bad http addr", []string{"--http", "8080"}, nil, "", []string{"http.addr"}},
		{"no gateways", []string{"--gateways", "0"}, nil, "", []string{"dev.gateways"}},
		{"negative expiry warning", []string{"--jwt.expiry_warning", "-1s"}, nil, "", []string{"jwt.expiry_warning", "negative"}},
		{"no handshake timeout", []string{"--http.handshake_timeout", "0s"}, nil, "", []string{"http.handshake_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeFile(t, tt.file)}, args...)
			}
			_, err := load(t, args, tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := err.(configError); !ok {
				t.Errorf("%T is not a configError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestRunConfigErrors checks that bad config exits with 2 before anything
// runs: the NATS URL points nowhere, so reaching it would exit with 1.
func TestRunConfigErrors(t *testing.T) {
	nowhere := "--nats.url=nats://127.0.0.1:1"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad duration", []string{"router", nowhere, "--call.ring_timeout", "soon"}, "call.ring_timeout"},
		{"router validation", []string{"router", nowhere, "--call.ended_retention", "100ms"}, "call.ended_retention = 100ms"},
		{"gateway auth", []string{"gateway", nowhere, "--jwt.secret", "short"}, "secret"},
		{"gateway needs a key", []string{"gateway", nowhere}, "jwt.secret empty (default; env CALLMESH_JWT_SECRET)"},
		{"dev router validation", []string{"dev", "--router.workers", "0"}, "router.workers = 0"},
		{"unknown flag", []string{"router", "--call.ring", "5s"}, "call.ring"},
		{"extra argument", []string{"gateway", "now"}, "now"},
		{"unknown command", []string{"bench2"}, "bench2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tt.args, nil, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr does not mention %q:\n%s", tt.want, stderr.String())
			}
		})
	}
}

// TestGatewayConfigRefused: a config only the gateway package can refuse
// still exits with 2 (after connecting to NATS).
func TestGatewayConfigRefused(t *testing.T) {
	srv, err := embednats.Start(embednats.Options{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"gateway", "--nats.url", srv.ClientURL(), "--http", "127.0.0.1:0",
		"--jwt.secret", strings.Repeat("s", 32), "--limits.send_queue", "1", "--log.level", "error"}, nil, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "limits.send_queue") {
		t.Errorf("exit code %d, want 2 naming the send queue; stderr:\n%s", code, stderr.String())
	}
}

func TestReferenceListsEveryKey(t *testing.T) {
	var stdout bytes.Buffer
	if code := Run(context.Background(), []string{"help", "config"}, nil, &stdout, io.Discard); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := stdout.String()
	rows := 0
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "| `") {
			rows++
		}
	}
	if rows != len(settings) {
		t.Errorf("%d rows for %d keys", rows, len(settings))
	}
	for _, s := range settings {
		if !strings.Contains(out, "| `"+s.key+"` |") || !strings.Contains(out, "`"+envName(s.key)+"`") {
			t.Errorf("reference lacks %s / %s", s.key, envName(s.key))
		}
	}
	// The keys of the brief, so none goes missing from the table.
	for _, key := range strings.Fields(`nats.url nats.prefix nats.replicas nats.creds nats.user nats.password
		nats.token nats.nkey_seed_file nats.tls_ca nats.tls_cert nats.tls_key http.addr http.demo http.origin_patterns
		http.handshake_timeout jwt.alg jwt.secret jwt.key_file jwt.jwks_url jwt.jwks_refresh jwt.issuer jwt.audience jwt.leeway jwt.expiry_warning
		jwt.max_token_bytes jwt.signing_key_file ice.servers call.ring_timeout call.resume_grace
		call.ended_retention presence.heartbeat presence.ttl presence.resync limits.max_message_bytes
		limits.max_data_bytes limits.send_queue limits.message_rate limits.message_burst limits.invite_rate limits.invite_burst limits.max_conns_per_user limits.max_conns limits.write_timeout
		limits.byte_rate limits.byte_burst limits.addr_connect_rate limits.addr_connect_burst limits.user_connect_rate limits.user_connect_burst limits.ping_interval router.timeout
		router.attempt router.workers router.http_addr log.level log.format dev.gateways dev.store_dir dev.nats_port dev.token_ttl`) {
		if byKey[key] == nil {
			t.Errorf("no key %s", key)
		}
	}
}

// TestDefaultsMatchComponents keeps the table's defaults equal to the
// packages' own.
func TestDefaultsMatchComponents(t *testing.T) {
	cfg := mustLoad(t, nil, nil)
	g, wantG := cfg.gatewayConfig(nil, nil), gateway.DefaultConfig()
	if g.Auth.Alg != wantG.Auth.Alg || g.Auth.Leeway != wantG.Auth.Leeway {
		t.Errorf("jwt.alg %q leeway %v, gateway default %q %v", g.Auth.Alg, g.Auth.Leeway, wantG.Auth.Alg, wantG.Auth.Leeway)
	}
	if g.Auth.JWKSRefresh != gateway.DefaultJWKSRefresh || g.Auth.MaxTokenBytes != gateway.DefaultMaxTokenBytes {
		t.Errorf("jwt.jwks_refresh %v, jwt.max_token_bytes %d differ from the verifier's defaults", g.Auth.JWKSRefresh, g.Auth.MaxTokenBytes)
	}
	g.Auth = wantG.Auth
	if !reflect.DeepEqual(g, wantG) {
		t.Errorf("gateway config from defaults:\n%+v\ngateway.DefaultConfig:\n%+v", g, wantG)
	}
	if r, wantR := cfg.routerConfig(nil, nil), router.DefaultConfig(); !reflect.DeepEqual(r, wantR) {
		t.Errorf("router config from defaults:\n%+v\nrouter.DefaultConfig:\n%+v", r, wantR)
	}
}

// TestComposeUsesKnownKeys keeps docker-compose.yml (validated, never run,
// here) true to the config: every CALLMESH_ variable it sets is a key.
func TestComposeUsesKnownKeys(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\bCALLMESH_[A-Z0-9_]+`).FindAllString(string(b), -1)
	if len(names) == 0 {
		t.Fatal("docker-compose.yml sets no CALLMESH_ variable")
	}
	for _, name := range names {
		if _, ok := envKeys[name]; !ok {
			t.Errorf("docker-compose.yml sets %s, which is no config key", name)
		}
	}
}

// README's configuration table is `callmesh help config`'s, row for row.
func TestREADMEConfigTable(t *testing.T) {
	var ref bytes.Buffer
	writeReference(&ref)
	want := map[string]bool{}
	var wantRows []string
	for line := range strings.Lines(ref.String()) {
		if strings.HasPrefix(line, "| `") {
			wantRows = append(wantRows, strings.TrimSpace(line))
			want[strings.TrimSpace(line)] = true
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for line := range strings.Lines(string(readme)) {
		line = strings.TrimSpace(line)
		if key, _, ok := strings.Cut(strings.TrimPrefix(line, "| `"), "`"); ok && strings.HasPrefix(line, "| `") && byKey[key] != nil {
			got = append(got, line)
		}
	}
	if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
		for _, row := range wantRows {
			if !slices.Contains(got, row) {
				t.Errorf("README lacks or differs in: %s", row)
			}
		}
		for _, row := range got {
			if !want[row] {
				t.Errorf("README has a row `callmesh help config` has not: %s", row)
			}
		}
		if !t.Failed() {
			t.Error("README's rows are in another order than `callmesh help config`'s")
		}
	}
}
