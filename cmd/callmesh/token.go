package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// tokenFlags are the flags of `callmesh token` besides the config keys.
type tokenFlags struct {
	user, kid        *string
	rooms, moderator *string
	ttl              *time.Duration
}

func addTokenFlags(fs *flag.FlagSet) tokenFlags {
	return tokenFlags{
		user:      fs.String("user", "", "the user id (sub claim); required"),
		ttl:       fs.Duration("ttl", time.Hour, "lifetime of the token"),
		kid:       fs.String("kid", "", "kid header, for verifiers that use a JWK Set"),
		rooms:     fs.String("rooms", "", "comma-separated room patterns the user may join (claim rooms; \"team-*\", \"*\")"),
		moderator: fs.String("moderator", "", "comma-separated room patterns the user moderates (claim moderator)"),
	}
}

// runToken mints a token with jwt.alg and jwt.secret (HS*) or
// jwt.signing_key_file, and jwt.issuer and jwt.audience, and prints it.
func runToken(cfg *Config, tf tokenFlags, out io.Writer) error {
	if *tf.user == "" {
		return configErrorf("--user is required")
	}
	if err := messages.ValidUserID(*tf.user); err != nil {
		return configErrorf("--user: %w", err)
	}
	if *tf.ttl <= 0 {
		return configErrorf("--ttl %v is not positive", *tf.ttl)
	}
	m := cfg.mintConfig()
	m.KeyID = *tf.kid
	grants := gateway.Grants{Rooms: patterns(*tf.rooms), Moderator: patterns(*tf.moderator)}
	token, err := gateway.MintGrants(m, *tf.user, *tf.ttl, grants)
	switch {
	case errors.Is(err, gateway.ErrAuthConfig):
		return cfg.explain(err, mintFields)
	case errors.Is(err, gateway.ErrMint): // the grants of --rooms or --moderator
		return configError{err}
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, token)
	return err
}

// patterns splits a comma-separated list of room patterns; empty is none.
func patterns(list string) []string {
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}
