package main

// Config errors name keys: the key, its environment variable and where its
// value came from. The rules themselves live in the components' Validate,
// which name their Go fields (*fielderr.Error); explain maps those to keys
// (fieldkeys.go). callmesh's own rules (Config.validate) name keys at once.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/fielderr"
)

// explain is err, from the validation of a component config that c built
// (fields maps its fields to keys), as a configError whose field errors
// name keys (nameKeys). nil stays nil.
func (c *Config) explain(err error, fields componentFields) error {
	if err == nil {
		return nil
	}
	return configError{c.nameKeys(err, fields)}
}

// nameKeys is err, from a component whose config c built (fields maps its
// fields to keys), with each field error told as a keyError.
func (c *Config) nameKeys(err error, fields componentFields) error {
	return fielderr.Rewrite(err, func(fe *fielderr.Error) error {
		keys := make([]string, len(fe.Fields))
		for i, f := range fe.Fields {
			keys[i] = c.keyOf(fields, f)
		}
		return c.keyError(fe.Reason, keys...)
	})
}

// listen listens on the TCP address of key (a string key), naming the key
// when it cannot: a busy port is not a config error, but the key is where
// to change it.
func (c *Config) listen(key string) (net.Listener, error) {
	addr := byKey[key].field(c).(*string)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.describe(key), err)
	}
	return ln, nil
}

// keyOf is the key that set field, or the field's Go name when none did.
func (c *Config) keyOf(fields componentFields, field string) string {
	key, ok := fields.keys[field]
	switch {
	case !ok:
		return fmt.Sprintf("%T.%s", fields.config, field)
	case key == "gateway.name" && c.Gateway.Name == "" && c.NATS.User != "":
		return "nats.user" // the gateway's name when gateway.name is empty
	}
	return key
}

// keyError is a problem with keys, told as
//
//	presence.ttl = 1s (from $CALLMESH_PRESENCE_TTL), presence.heartbeat = 1s (default; env CALLMESH_PRESENCE_HEARTBEAT): reason
//
// A "key" that is no key (keyOf's Go name) is written as it is.
func (c *Config) keyError(reason string, keys ...string) error {
	parts := make([]string, len(keys))
	for i, key := range keys {
		parts[i] = c.describe(key)
	}
	return errors.New(strings.Join(parts, ", ") + ": " + reason)
}

// describe is key, its value (unless secret) and where the value came from.
func (c *Config) describe(key string) string {
	s := byKey[key]
	if s == nil {
		return key
	}
	return key + showValue(key, s.field(c)) + " (" + c.source(key) + ")"
}

// source is where key's value came from, naming its environment variable:
// "default; env CALLMESH_X", "from $CALLMESH_X", "from flag --x; env
// CALLMESH_X", "from file PATH; env CALLMESH_X".
func (c *Config) source(key string) string {
	from := c.origin[key]
	switch {
	case from == "":
		return "default; env " + envName(key)
	case strings.HasPrefix(from, "$"):
		return "from " + from
	}
	return "from " + from + "; env " + envName(key)
}

// showValue writes the value at ptr (a setting's field) after its key:
// " = 1s", " empty", or for secrets only their size.
func showValue(key string, ptr any) string {
	var v string
	switch p := ptr.(type) {
	case *string:
		if *p == "" {
			return " empty"
		}
		if secretKeys[key] {
			return fmt.Sprintf(" of %d bytes", len(*p))
		}
		v = *p
	case *int:
		v = strconv.Itoa(*p)
	case *bool:
		v = strconv.FormatBool(*p)
	case *float64:
		v = strconv.FormatFloat(*p, 'g', -1, 64)
	case *time.Duration:
		v = shortDuration(*p)
	case *[]string:
		if len(*p) == 0 {
			return " empty"
		}
		v = strings.Join(*p, ",")
	case *[]gateway.ICEServerConfig:
		return fmt.Sprintf(" of %d servers", len(*p)) // they may hold credentials
	}
	return " = " + v
}
