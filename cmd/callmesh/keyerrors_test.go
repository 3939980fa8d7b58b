package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestConfigErrorsNameKeys runs each command with a bad value of a key
// from each source — a flag, the environment, the config file, or the
// default — and checks that it exits with 2, before it reaches NATS
// (nats.url points nowhere: that would exit with 1), with a message that
// names the key, its environment variable and where its value came from,
// and likewise every other key the rule involves; and that it never shows
// a secret. It covers every component validation a command reaches
// (gateway, auth, mint, router, turn, webhook) and callmesh's own.
func TestConfigErrorsNameKeys(t *testing.T) {
	dir := t.TempDir()
	pemFile := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(pub)
	edPublic := pemFile("ed25519.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	notPEM := pemFile("not.pem", "hello\n")
	missing := filepath.Join(dir, "missing.pem")

	nowhere := "--nats.url=nats://127.0.0.1:1"
	jwtSecret := "--jwt.secret=" + strings.Repeat("s", 32)
	turnOK := []string{"--turn.secret=" + strings.Repeat("t", 16), "--turn.relay_ip=127.0.0.1", "--turn.http_addr="}
	hookOK := []string{nowhere, "--webhook.url=http://127.0.0.1:1/hook", "--webhook.secret=" + strings.Repeat("w", 16), "--webhook.http_addr="}
	dev := []string{"--dev.nats_port=0", "--http=127.0.0.1:0"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }

	tests := []struct {
		cmd   string
		args  []string // valid settings of other keys, as flags
		key   string   // the bad key
		value string   // its bad value; with byDefault, the default is bad
		also  []string // the other keys the error names

		byDefault bool
	}{
		// gateway: its own config, then the token verification (jwt.*).
		{cmd: "gateway", args: []string{nowhere}, key: "jwt.secret", byDefault: true, also: []string{"jwt.key_file", "jwt.jwks_url"}},
		{cmd: "gateway", args: []string{nowhere}, key: "jwt.secret", value: "short"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "jwt.key_file", value: edPublic, also: []string{"jwt.secret", "jwt.jwks_url"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "jwt.alg", value: "none"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "jwt.alg", value: "RS256", also: []string{"jwt.secret"}},
		{cmd: "gateway", args: []string{nowhere, "--jwt.alg=ES256"}, key: "jwt.key_file", value: missing},
		{cmd: "gateway", args: []string{nowhere, "--jwt.alg=ES256"}, key: "jwt.key_file", value: notPEM},
		{cmd: "gateway", args: []string{nowhere, "--jwt.alg=ES256"}, key: "jwt.key_file", value: edPublic, also: []string{"jwt.alg"}},
		{cmd: "gateway", args: []string{nowhere, "--jwt.alg=ES256"}, key: "jwt.jwks_url", value: "ftp://keys.example.com"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "gateway.name", value: "gw.1"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret, "--nats.password=p"}, key: "nats.user", value: "gw.1"}, // the gateway's name when gateway.name is empty
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "call.ring_timeout", value: "0s"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "presence.heartbeat", value: "0s"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "presence.ttl", value: "1s", also: []string{"presence.heartbeat"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.write_timeout", value: "0s"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.ping_interval", value: "0s"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "router.timeout", value: "0s"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "router.attempt", value: "0s"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.max_message_bytes", value: "100"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.max_data_bytes", value: "0", also: []string{"limits.max_message_bytes"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.max_data_bytes", value: "70000", also: []string{"limits.max_message_bytes"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.message_rate", value: "0"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.message_burst", value: "0"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.invite_rate", value: "0"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.invite_burst", value: "0"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.byte_rate", value: "0"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.byte_burst", value: "1000", also: []string{"limits.max_message_bytes"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.addr_connect_burst", value: "0", also: []string{"limits.addr_connect_rate"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.user_connect_burst", value: "0", also: []string{"limits.user_connect_rate"}},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "limits.send_queue", value: "1"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "http.origin_patterns", value: "[app"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "ice.transport_policy", value: "none"},

		// router, and the events stream it keeps.
		{cmd: "router", args: []string{nowhere}, key: "call.ring_timeout", value: "0s"},
		{cmd: "router", args: []string{nowhere}, key: "presence.ttl", value: "0s"},
		{cmd: "router", args: []string{nowhere}, key: "call.ended_retention", value: "100ms"},
		{cmd: "router", args: []string{nowhere}, key: "presence.resync", value: "100ms"},
		{cmd: "router", args: []string{nowhere}, key: "router.workers", value: "0"},
		{cmd: "router", args: []string{nowhere}, key: "rooms.max_members", value: "1"},
		{cmd: "router", args: []string{nowhere}, key: "nats.replicas", value: "6"},
		{cmd: "router", args: []string{nowhere}, key: "events.retention", value: "1s"},
		{cmd: "router", args: []string{nowhere}, key: "events.max_bytes", value: "1000"},

		// turn.
		{cmd: "turn", args: turnOK, key: "turn.realm", value: ""},
		{cmd: "turn", args: turnOK[1:], key: "turn.secret", value: "short-secret"},
		{cmd: "turn", args: turnOK[1:], key: "turn.secret", byDefault: true},
		{cmd: "turn", args: with(turnOK, "--turn.tcp_addr="), key: "turn.udp_addr", value: "", also: []string{"turn.tcp_addr", "turn.tls_addr"}},
		{cmd: "turn", args: turnOK, key: "turn.tls_addr", value: "127.0.0.1:5349", also: []string{"turn.tls_cert", "turn.tls_key"}},
		{cmd: "turn", args: with(turnOK, "--turn.tls_addr=127.0.0.1:0", "--turn.tls_key="+notPEM), key: "turn.tls_cert", value: missing, also: []string{"turn.tls_key"}},
		{cmd: "turn", args: []string{turnOK[0]}, key: "turn.relay_ip", byDefault: true},
		{cmd: "turn", args: turnOK[:1], key: "turn.relay_ip", value: "0.0.0.0"},
		{cmd: "turn", args: turnOK, key: "turn.relay_bind", value: "here"},
		{cmd: "turn", args: with(turnOK, "--turn.port_max=4000"), key: "turn.port_min", value: "5000", also: []string{"turn.port_max"}},
		{cmd: "turn", args: turnOK, key: "turn.allow_peer_cidrs", value: "10.0.0.0/33"},

		// token: signing (mint).
		{cmd: "token", args: []string{"--user=alice"}, key: "jwt.secret", byDefault: true, also: []string{"jwt.alg"}},
		{cmd: "token", args: []string{"--user=alice"}, key: "jwt.secret", value: "short"},
		{cmd: "token", args: []string{"--user=alice", jwtSecret}, key: "jwt.alg", value: "none"},
		{cmd: "token", args: []string{"--user=alice"}, key: "jwt.alg", value: "ES256", also: []string{"jwt.signing_key_file"}},
		{cmd: "token", args: []string{"--user=alice", "--jwt.alg=ES256"}, key: "jwt.signing_key_file", value: missing},
		{cmd: "token", args: []string{"--user=alice", "--jwt.alg=ES256"}, key: "jwt.signing_key_file", value: edPublic},

		// dev: its own keys, dev tokens, and every component it runs.
		{cmd: "dev", args: dev, key: "dev.gateways", value: "0"},
		{cmd: "dev", args: dev[1:], key: "dev.nats_port", value: "70000"},
		{cmd: "dev", args: dev, key: "dev.token_ttl", value: "0s"},
		{cmd: "dev", args: with(dev, "--jwt.alg=ES256", "--jwt.key_file="+edPublic), key: "jwt.signing_key_file", value: notPEM},
		{cmd: "dev", args: dev, key: "presence.ttl", value: "1s", also: []string{"presence.heartbeat"}},
		{cmd: "dev", args: dev, key: "router.workers", value: "0"},
		{cmd: "dev", args: dev, key: "turn.realm", value: ""},
		{cmd: "dev", args: with(dev, "--turn.port_max=4000"), key: "turn.port_min", value: "5000", also: []string{"turn.port_max"}},

		// webhook.
		{cmd: "webhook", args: hookOK[:1], key: "webhook.url", byDefault: true},
		{cmd: "webhook", args: with(hookOK[:1], hookOK[2:]...), key: "webhook.url", value: "ftp://hooks.example.com"},
		{cmd: "webhook", args: with(hookOK[:2], hookOK[3:]...), key: "webhook.secret", value: "short"},
		{cmd: "webhook", args: hookOK, key: "webhook.timeout", value: "0s"},
		{cmd: "webhook", args: hookOK, key: "webhook.max_attempts", value: "0"},
		{cmd: "webhook", args: hookOK, key: "webhook.durable", value: ""},

		// callmesh's own checks, for every command; parse errors.
		{cmd: "router", args: []string{nowhere}, key: "log.level", value: "loud"},
		{cmd: "router", args: []string{nowhere}, key: "log.format", value: "xml"},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "http.addr", value: "8080"},
		{cmd: "events", args: []string{nowhere}, key: "nats.prefix", value: "call mesh"},
		{cmd: "router", args: []string{nowhere}, key: "nats.tls_cert", value: "client.pem", also: []string{"nats.tls_key"}},
		{cmd: "router", args: []string{nowhere}, key: "nats.user", value: "router", also: []string{"nats.password"}},
		{cmd: "router", args: []string{nowhere, "--nats.creds=router.creds"}, key: "nats.token", value: "t0ken", also: []string{"nats.creds"}},
		{cmd: "router", args: []string{nowhere, "--router.http_addr="}, key: "nats.nkey_seed_file", value: missing},
		{cmd: "gateway", args: []string{nowhere, jwtSecret}, key: "http.handshake_timeout", value: "0s"},
		{cmd: "router", args: []string{nowhere}, key: "call.ring_timeout", value: "soon"},
		{cmd: "router", args: []string{nowhere}, key: "router.workers", value: "lots"},
	}
	for _, tt := range tests {
		sources := []string{"flag", "env", "file"}
		if tt.byDefault {
			sources = []string{"default"}
		}
		for _, source := range sources {
			t.Run(fmt.Sprintf("%s %s %s", tt.cmd, tt.key, source), func(t *testing.T) {
				args := append([]string{tt.cmd}, tt.args...)
				var environ []string
				env := envName(tt.key)
				var from string // how the message must tell the source
				switch source {
				case "flag":
					args = append(args, "--"+tt.key+"="+tt.value)
					from = `from flag --` + tt.key + `; env ` + env
				case "env":
					environ = []string{env + "=" + tt.value}
					from = `from \$` + env
				case "file":
					path := writeFile(t, tt.key+": "+strconv.Quote(tt.value)+"\n")
					args = append(args, "--config", path)
					from = `from file ` + regexp.QuoteMeta(path) + `; env ` + env
				case "default":
					from = `default; env ` + env
				}
				var stdout, stderr bytes.Buffer
				code := Run(context.Background(), args, environ, &stdout, &stderr)
				msg := stderr.String()
				if code != 2 {
					t.Fatalf("exit code %d, want 2; stderr:\n%s", code, msg)
				}
				// key[ = value| empty| of N bytes] (source): the source
				// belongs to the key.
				if !regexp.MustCompile(regexp.QuoteMeta(tt.key) + `[^(\n]* \(` + from + `\)`).MatchString(msg) {
					t.Errorf("does not name %s with %s and its source (%s):\n%s", tt.key, env, source, msg)
				}
				for _, key := range tt.also {
					e := envName(key)
					re := regexp.QuoteMeta(key) + `[^(\n]* \((default; env ` + e + `|from \$` + e + `|from (flag --` + regexp.QuoteMeta(key) + `|file [^;]+); env ` + e + `)\)`
					if !regexp.MustCompile(re).MatchString(msg) {
						t.Errorf("does not name %s with %s and its source:\n%s", key, e, msg)
					}
				}
				if secretKeys[tt.key] && tt.value != "" && strings.Contains(msg, tt.value) {
					t.Errorf("shows the secret %s:\n%s", tt.key, msg)
				}
				if strings.Count(strings.TrimSpace(msg), "\n") > 3 {
					t.Errorf("more than the one problem:\n%s", msg)
				}
			})
		}
	}
}

// TestFieldKeys keeps fieldkeys.go true: every field it maps is a field of
// the component's config, and every key it names is a key.
func TestFieldKeys(t *testing.T) {
	for _, cf := range []componentFields{gatewayFields, authFields, mintFields, routerFields, turnFields, webhookFields, natsFields} {
		typ := reflect.TypeOf(cf.config)
		for field, key := range cf.keys {
			ft := typ
			for name := range strings.SplitSeq(field, ".") {
				f, ok := ft.FieldByName(name)
				if !ok {
					t.Errorf("%v has no field %s", typ, field)
					break
				}
				ft = f.Type
			}
			if byKey[key] == nil {
				t.Errorf("%v.%s maps to %s, which is no key", typ, field, key)
			}
		}
	}
}

// TestListenNamesKey: an address that cannot be listened on (here: in use)
// is no config error (exit code 1), but the message names the key to
// change and where its value came from.
func TestListenNamesKey(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	addr, udpAddr := busy.Addr().String(), udp.LocalAddr().String()
	for _, tt := range []struct {
		args    []string
		environ []string
		want    string
	}{
		{[]string{"router", "--nats.url=nats://127.0.0.1:1", "--router.http_addr", addr}, nil,
			"router.http_addr = " + addr + " (from flag --router.http_addr; env CALLMESH_ROUTER_HTTP_ADDR): listen tcp " + addr},
		{[]string{"gateway", "--nats.url=nats://127.0.0.1:1", "--jwt.secret", strings.Repeat("s", 32)}, []string{"CALLMESH_HTTP_ADDR=" + addr},
			"http.addr = " + addr + " (from $CALLMESH_HTTP_ADDR): listen tcp " + addr},
		{[]string{"turn", "--turn.secret", strings.Repeat("t", 16), "--turn.relay_ip=127.0.0.1", "--turn.tcp_addr=", "--turn.http_addr=", "--turn.udp_addr", udpAddr}, nil,
			"turn.udp_addr = " + udpAddr + " (from flag --turn.udp_addr; env CALLMESH_TURN_UDP_ADDR): listen udp " + udpAddr},
	} {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), tt.args, tt.environ, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: exit code %d, want 1 with %q; stderr:\n%s", tt.args[0], code, tt.want, stderr.String())
		}
	}
}
