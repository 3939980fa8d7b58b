package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
)

func TestToken(t *testing.T) {
	secret := strings.Repeat("k", 40)
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"token", "--user", "alice", "--ttl", "10m", "--rooms", "team-*,standup", "--moderator", "team-a",
		"--jwt.secret", secret, "--jwt.issuer", "https://issuer.example", "--jwt.audience", "callmesh"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	v, err := gateway.NewVerifier(context.Background(), gateway.AuthConfig{
		Alg: "HS256", Secret: secret, Issuer: "https://issuer.example", Audience: "callmesh"})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatalf("verify %q: %v", stdout.String(), err)
	}
	if claims.Subject != "alice" {
		t.Errorf("sub %q, want alice", claims.Subject)
	}
	if d := time.Until(claims.Expires); d > 10*time.Minute || d < 9*time.Minute {
		t.Errorf("expires in %v, want about 10m", d)
	}
	g := claims.Grants
	if !g.Join("team-b") || !g.Join("standup") || g.Join("standup2") || !g.Moderate("team-a") || g.Moderate("team-b") {
		t.Errorf("grants %+v: want rooms team-*, standup and moderator team-a", g)
	}
}

func TestTokenErrors(t *testing.T) {
	secret := "--jwt.secret=" + strings.Repeat("k", 40)
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no user", []string{"token", secret}, nil, "--user"},
		{"no secret", []string{"token", "--user", "alice"}, nil, "jwt.secret empty"},
		{"short secret from env", []string{"token", "--user", "alice"}, []string{"CALLMESH_JWT_SECRET=short"}, "32"},
		{"malformed room pattern", []string{"token", "--user", "alice", "--rooms", "a,,b", secret}, nil, "rooms"},
		{"zero ttl", []string{"token", "--user", "alice", "--ttl", "0s", secret}, nil, "ttl"},
		{"asymmetric without a key", []string{"token", "--user", "alice", "--jwt.alg", "ES256"}, nil, "jwt.signing_key_file empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tt.args, tt.env, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit code %d, want 2 mentioning %q; stderr: %s", code, tt.want, stderr.String())
			}
			if stdout.Len() > 0 {
				t.Errorf("printed %q", stdout.String())
			}
		})
	}
}

func TestUsageAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), nil, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "commands:") {
		t.Errorf("no args: exit %d, stderr %q", code, stderr.String())
	}
	stdout.Reset()
	if code := Run(context.Background(), []string{"help"}, nil, &stdout, &stderr); code != 0 {
		t.Errorf("help: exit %d", code)
	}
	for _, cmd := range []string{"dev", "gateway", "router", "token", "version", "help"} {
		if !strings.Contains(stdout.String(), "  "+cmd+" ") {
			t.Errorf("usage does not list %s:\n%s", cmd, stdout.String())
		}
	}
	stdout.Reset()
	if code := Run(context.Background(), []string{"dev", "-h"}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "usage: callmesh dev") {
		t.Errorf("dev -h: exit %d, %q", code, stdout.String())
	}
	stdout.Reset()
	if code := Run(context.Background(), []string{"version"}, nil, &stdout, &stderr); code != 0 ||
		!strings.HasPrefix(stdout.String(), "callmesh dev\n") || !strings.Contains(stdout.String(), runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, stdout.String())
	}
}
