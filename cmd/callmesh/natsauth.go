package main

import (
	_ "embed"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/template"

	"github.com/callmesh/callmesh/messages"
)

// natsAuthTemplate is deploy/nats-auth.conf with the prefix and the
// gateways' names left open (TestShippedNATSAuthIsGenerated).
//
//go:embed natsauth.tmpl
var natsAuthTemplate string

// defaultGatewayNames are the gateways of the shipped deploy/nats-auth.conf,
// each with a login of its own.
const defaultGatewayNames = "gateway-1,gateway-2"

func addNATSAuthFlags(fs *flag.FlagSet) *string {
	return fs.String("gateway-names", defaultGatewayNames, "comma-separated gateway names (gateway.name of each gateway)")
}

// runNATSAuth prints the NATS authorization config for the routers and the
// named gateways, under nats.prefix.
func runNATSAuth(cfg *Config, gateways string, out io.Writer) error {
	if _, err := messages.NewNames(cfg.NATS.Prefix); err != nil {
		return configErrorf("nats.prefix: %w", err)
	}
	names := strings.Split(gateways, ",")
	vars := map[string]string{passwordVar("router"): "router"}
	for _, name := range names {
		if err := messages.ValidGatewayName(name); err != nil {
			return configErrorf("--gateway-names: %w", err)
		}
		if other, dup := vars[passwordVar(name)]; dup {
			return configErrorf("--gateway-names: %q and %q would share the variable %s", other, name, passwordVar(name))
		}
		vars[passwordVar(name)] = name
	}
	t, err := template.New("nats-auth").Funcs(template.FuncMap{
		"join":           strings.Join,
		"passwordVar":    passwordVar,
		"permissionsVar": func(name string) string { return varStem(name) + "_PERMISSIONS" },
		"pad":            func(name string) string { return strings.Repeat(" ", max(0, 30-len(passwordVar(name)))) },
	}).Parse(natsAuthTemplate)
	if err != nil {
		return fmt.Errorf("nats-auth template: %w", err)
	}
	return t.Execute(out, struct {
		P        string
		Gateways []string
	}{cfg.NATS.Prefix, names})
}

// varStem turns a gateway name into the stem of its config variables.
func varStem(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// passwordVar is the environment variable holding name's NATS password.
func passwordVar(name string) string { return "NATS_" + varStem(name) + "_PASSWORD" }
