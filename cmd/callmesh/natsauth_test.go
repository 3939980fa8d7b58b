package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// composeGatewayName is the one login, and name, of all the gateways of
// docker-compose.yml: replicas of one service, scaled with --scale, cannot
// each have their own.
const composeGatewayName = "gateway"

// The shipped NATS authorizations are what `callmesh nats-auth` prints:
// deploy/nats-auth.conf for two gateways with their own logins,
// deploy/compose/nats-auth.conf for the compose stack's pool of gateways
// sharing the login `gateway`. Regenerate them after changing the template.
func TestShippedNATSAuthIsGenerated(t *testing.T) {
	for file, names := range map[string]string{
		"deploy/nats-auth.conf":         defaultGatewayNames,
		"deploy/compose/nats-auth.conf": composeGatewayName,
	} {
		var out, errs bytes.Buffer
		if code := Run(t.Context(), []string{"nats-auth", "--gateway-names", names}, nil, &out, &errs); code != 0 {
			t.Fatalf("exit %d: %s", code, errs.String())
		}
		shipped, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), shipped) {
			t.Errorf("%s differs from `callmesh nats-auth`: go run ./cmd/callmesh nats-auth --gateway-names %s > %s", file, names, file)
		}
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
