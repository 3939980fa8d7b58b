package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The shipped deploy/nats-auth.conf is what `callmesh nats-auth` prints
// for the compose file's gateways: regenerate it after changing the
// template.
func TestShippedNATSAuthIsGenerated(t *testing.T) {
	var out, errs bytes.Buffer
	if code := Run(t.Context(), []string{"nats-auth", "--gateway-names", defaultGatewayNames}, nil, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	shipped, err := os.ReadFile("../../deploy/nats-auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), shipped) {
		t.Fatal("deploy/nats-auth.conf differs from `callmesh nats-auth`: go run ./cmd/callmesh nats-auth > deploy/nats-auth.conf")
	}
}

func TestNATSAuthRefusesBadNames(t *testing.T) {
	for _, names := range []string{"gateway-1,a.b", "gw,>", "a-b,a_b", "", "x,router"} {
		var out, errs bytes.Buffer
		if code := Run(t.Context(), []string{"nats-auth", "--gateway-names", names}, nil, &out, &errs); code != 2 {
			t.Errorf("--gateway-names %q: exit %d, want 2 (%s)", names, code, errs.String())
		}
	}
	var out, errs bytes.Buffer
	if code := Run(t.Context(), []string{"nats-auth", "--nats.prefix", "acme", "--gateway-names", "edge-a"}, nil, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	for _, want := range []string{`"acme.gw.edge-a.>"`, `"$KV.acme_presence.gw.edge-a.*"`, "$NATS_EDGE_A_PASSWORD", `"acme.gw.*.*.deliver"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s", want)
		}
	}
}
