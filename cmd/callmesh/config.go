package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// configError is a configuration or usage error: Run exits with 2.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

func configErrorf(format string, args ...any) error {
	return configError{fmt.Errorf(format, args...)}
}

// flagValues holds what the command line set: config keys by name, and
// the config file.
type flagValues struct {
	keys   map[string]string
	config string
}

// keyFlag is the flag of one key (or of an alias of it).
type keyFlag struct {
	key  string
	vals *flagValues
}

func (f keyFlag) String() string { return "" }
func (f keyFlag) Set(v string) error {
	f.vals.keys[f.key] = v
	return nil
}

// addConfigFlags defines --config and one flag per key (plus the short
// aliases) on fs.
func addConfigFlags(fs *flag.FlagSet) *flagValues {
	vals := &flagValues{keys: map[string]string{}}
	fs.StringVar(&vals.config, "config", "", "YAML config file (default $"+envConfig+")")
	for _, s := range settings {
		fs.Var(keyFlag{s.key, vals}, s.key, s.desc)
	}
	for alias, key := range flagAliases {
		fs.Var(keyFlag{key, vals}, alias, "short for --"+key)
	}
	return vals
}

// loadConfig builds the Config from the defaults, the YAML file (path, or
// CALLMESH_CONFIG when empty), the CALLMESH_* variables of environ and the
// flags, each overriding the one before, and validates what all commands
// need. Every error is a configError.
func loadConfig(fv *flagValues, environ []string) (*Config, error) {
	origin := map[string]string{} // key → where its value came from, for errors
	k := koanf.New(".")

	defaults := map[string]any{}
	for _, s := range settings {
		defaults[s.key] = s.def
	}
	if err := k.Load(confmap.Provider(defaults, "."), nil); err != nil {
		return nil, configErrorf("defaults: %w", err)
	}

	path := fv.config
	if path == "" {
		path = lookupEnv(environ, envConfig)
	}
	if path != "" {
		fk, err := loadFile(path)
		if err != nil {
			return nil, err
		}
		for _, key := range fk.Keys() {
			origin[key] = "file " + path
		}
		if err := k.Merge(fk); err != nil {
			return nil, configErrorf("config file %s: %w", path, err)
		}
	}

	var unknown []string
	ek := koanf.New(".")
	err := ek.Load(env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			key, ok := envKeys[name]
			switch {
			case ok:
				origin[key] = "$" + name
			case name != envConfig:
				unknown = append(unknown, name)
			}
			return key, value
		},
	}), nil)
	if err != nil {
		return nil, configErrorf("environment: %w", err)
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, configErrorf("unknown environment variable %s (see `callmesh help config`)", strings.Join(unknown, ", "))
	}
	if err := k.Merge(ek); err != nil {
		return nil, configErrorf("environment: %w", err)
	}

	flags := map[string]any{}
	for key, v := range fv.keys {
		flags[key] = v
		origin[key] = "flag --" + key
	}
	if err := k.Load(confmap.Provider(flags, "."), nil); err != nil {
		return nil, configErrorf("flags: %w", err)
	}

	cfg := &Config{origin: origin}
	var errs []error
	for _, s := range settings {
		if err := setField(s.field(cfg), k.Get(s.key)); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", s.key, cfg.source(s.key), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, configError{err}
	}
	if err := cfg.validate(); err != nil {
		return nil, configError{err}
	}
	return cfg, nil
}

// loadFile reads a YAML config file. A key it does not know is an error;
// a key left empty (null) counts as not set.
func loadFile(path string) (*koanf.Koanf, error) {
	fk := koanf.New(".")
	if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, configErrorf("config file %s: %w", path, err)
	}
	// Rebuild from the flattened keys, so that a dotted key ("call.ring_timeout:")
	// and a nested one (call: ring_timeout:) are the same key.
	flat := map[string]any{}
	var unknown []string
	for key, v := range fk.All() {
		if m, isMap := v.(map[string]any); v == nil || (isMap && len(m) == 0) {
			continue
		}
		if byKey[key] == nil {
			unknown = append(unknown, key)
		}
		flat[key] = v
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, configErrorf("config file %s: unknown key %s (see `callmesh help config`)", path, strings.Join(unknown, ", "))
	}
	nk := koanf.New(".")
	if err := nk.Load(confmap.Provider(flat, "."), nil); err != nil {
		return nil, configErrorf("config file %s: %w", path, err)
	}
	return nk, nil
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range slices.Backward(environ) {
		if n, v, ok := strings.Cut(kv, "="); ok && n == name {
			return v
		}
	}
	return ""
}

// setField parses raw (a string from a default, the environment or a flag,
// or a YAML value) into dst, a pointer from setting.field.
func setField(dst, raw any) error {
	var err error
	switch p := dst.(type) {
	case *string:
		*p, err = asString(raw)
	case *int:
		*p, err = asInt(raw)
	case *bool:
		*p, err = asBool(raw)
	case *float64:
		*p, err = asNumber(raw)
	case *time.Duration:
		*p, err = asDuration(raw)
	case *[]string:
		*p, err = asList(raw)
	case *[]gateway.ICEServerConfig:
		*p, err = asICEServers(raw)
	default:
		panic(fmt.Sprintf("setField: unsupported %T", dst))
	}
	return err
}

func asString(raw any) (string, error) {
	switch v := raw.(type) {
	case string:
		return v, nil
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(v), nil
	}
	return "", fmt.Errorf("want a string, got %T", raw)
}

func asInt(raw any) (int, error) {
	var n int
	switch v := raw.(type) {
	case string:
		var err error
		if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
			return 0, fmt.Errorf("%q is not an integer", v)
		}
	case int:
		n = v
	case int64:
		n = int(v)
	case uint64:
		if v > math.MaxInt {
			return 0, fmt.Errorf("%d is too large", v)
		}
		n = int(v)
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > math.MaxInt32 {
			return 0, fmt.Errorf("%v is not an integer", v)
		}
		n = int(v)
	default:
		return 0, fmt.Errorf("want an integer, got %T", raw)
	}
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return n, nil
}

func asNumber(raw any) (float64, error) {
	var f float64
	switch v := raw.(type) {
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return 0, fmt.Errorf("%q is not a number", v)
		}
	case int:
		f = float64(v)
	case int64:
		f = float64(v)
	case uint64:
		f = float64(v)
	case float64:
		f = v
	default:
		return 0, fmt.Errorf("want a number, got %T", raw)
	}
	if f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%v is not a non-negative number", f)
	}
	return f, nil
}

func asBool(raw any) (bool, error) {
	switch v := raw.(type) {
	case bool:
		return v, nil
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return false, fmt.Errorf("%q is not true or false", v)
		}
		return b, nil
	}
	return false, fmt.Errorf("want true or false, got %T", raw)
}

func asDuration(raw any) (time.Duration, error) {
	var d time.Duration
	switch v := raw.(type) {
	case string:
		var err error
		if d, err = time.ParseDuration(strings.TrimSpace(v)); err != nil {
			return 0, fmt.Errorf("%q is not a duration (write e.g. 30s, 1m, 1h30m)", v)
		}
	case int, int64, uint64, float64:
		if fmt.Sprint(v) != "0" {
			return 0, fmt.Errorf("%v has no unit (write e.g. 30s, 1m, 1h30m)", v)
		}
	default:
		return 0, fmt.Errorf("want a duration such as 30s, got %T", raw)
	}
	if d < 0 {
		return 0, fmt.Errorf("%v is negative", d)
	}
	return d, nil
}

// asList takes a YAML list, or a string holding a JSON array or
// comma-separated items.
func asList(raw any) ([]string, error) {
	switch v := raw.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, item := range v {
			s, err := asString(item)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case string:
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, "[") {
			var out []string
			if err := json.Unmarshal([]byte(v), &out); err != nil {
				return nil, fmt.Errorf("not a JSON array of strings: %w", err)
			}
			return out, nil
		}
		var out []string
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a list, got %T", raw)
}

// iceServerJSON is how an ICE server is written in config: ttl as a
// duration string, urls as a list or a single string.
type iceServerJSON struct {
	URLs       stringOrList `json:"urls"`
	Username   string       `json:"username"`
	Credential string       `json:"credential"`
	Secret     string       `json:"secret"`
	TTL        string       `json:"ttl"`
}

type stringOrList []string

func (l *stringOrList) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*l = []string{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// asICEServers takes a YAML list of maps or a string holding the same as
// JSON. Unknown fields are errors, like unknown keys.
func asICEServers(raw any) ([]gateway.ICEServerConfig, error) {
	var data []byte
	switch v := raw.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return nil, nil
		}
		data = []byte(v)
	case []any:
		var err error
		if data, err = json.Marshal(v); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("want a list of ICE servers, got %T", raw)
	}
	var in []iceServerJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf(`want a JSON list like [{"urls":["stun:host:3478"]}]: %w`, err)
	}
	out := make([]gateway.ICEServerConfig, 0, len(in))
	for i, s := range in {
		if len(s.URLs) == 0 {
			return nil, fmt.Errorf("server %d has no urls", i)
		}
		var ttl time.Duration
		if s.TTL != "" {
			var err error
			if ttl, err = asDuration(s.TTL); err != nil {
				return nil, fmt.Errorf("server %d: ttl: %w", i, err)
			}
		}
		out = append(out, gateway.ICEServerConfig{
			URLs: s.URLs, Username: s.Username, Credential: s.Credential, Secret: s.Secret, TTL: ttl,
		})
	}
	return out, nil
}

// validate checks what the components do not: logging, listen address,
// NATS prefix and credentials and the dev keys. Components check their own
// configs (checkGateway, checkRouter, …).
func (c *Config) validate() error {
	var errs []error
	bad := func(reason string, keys ...string) { errs = append(errs, c.keyError(reason, keys...)) }
	if _, err := parseLevel(c.Log.Level); err != nil {
		bad("must be debug, info, warn or error", "log.level")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("must be text or json", "log.format")
	}
	if _, _, err := splitAddr(c.HTTP.Addr); err != nil {
		bad(err.Error(), "http.addr")
	}
	if _, err := messages.NewNames(c.NATS.Prefix); err != nil {
		bad(strings.TrimPrefix(err.Error(), "messages: "), "nats.prefix")
	}
	n := c.NATS
	if (n.TLSCert == "") != (n.TLSKey == "") {
		bad("a client certificate and its key go together", "nats.tls_cert", "nats.tls_key")
	}
	if (n.User == "") != (n.Password == "") {
		bad("a user and a password go together", "nats.user", "nats.password")
	}
	var methods []string
	for _, m := range []struct {
		key string
		set bool
	}{{"nats.creds", n.Creds != ""}, {"nats.user", n.User != ""}, {"nats.token", n.Token != ""}, {"nats.nkey_seed_file", n.NKeySeed != ""}} {
		if m.set {
			methods = append(methods, m.key)
		}
	}
	if len(methods) > 1 {
		bad("set only one way to log in to NATS: nats.creds, nats.user, nats.token or nats.nkey_seed_file", methods...)
	}
	if c.Dev.Gateways < 1 || c.Dev.Gateways > 100 {
		bad("must be 1 to 100", "dev.gateways")
	}
	if c.Dev.NATSPort > 65535 {
		bad("must be a port, at most 65535", "dev.nats_port")
	}
	if c.Dev.TokenTTL <= 0 {
		bad("must be positive", "dev.token_ttl")
	}
	if c.HTTP.HandshakeTimeout <= 0 {
		bad("must be positive", "http.handshake_timeout")
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log.level: %q is not debug, info, warn or error", s)
	}
	return l, nil
}

// splitAddr splits a listen address into host and numeric port.
func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q is not a port", p)
	}
	return host, port, nil
}
