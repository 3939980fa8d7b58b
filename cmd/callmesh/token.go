package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/callmesh/callmesh/gateway"
)

// tokenFlags are the flags of `callmesh token` besides the config keys.
type tokenFlags struct {
	user, kid *string
	ttl       *time.Duration
}

func addTokenFlags(fs *flag.FlagSet) tokenFlags {
	return tokenFlags{
		user: fs.String("user", "", "the user id (sub claim); required"),
		ttl:  fs.Duration("ttl", time.Hour, "lifetime of the token"),
		kid:  fs.String("kid", "", "kid header, for verifiers that use a JWK Set"),
	}
}

// runToken mints a token with jwt.alg and jwt.secret (HS*) or
// jwt.signing_key_file, and jwt.issuer and jwt.audience, and prints it.
func runToken(cfg *Config, tf tokenFlags, out io.Writer) error {
	if *tf.user == "" {
		return configErrorf("--user is required")
	}
	m := cfg.mintConfig()
	m.KeyID = *tf.kid
	token, err := gateway.Mint(m, *tf.user, *tf.ttl)
	if errors.Is(err, gateway.ErrAuthConfig) || errors.Is(err, gateway.ErrMint) {
		return configError{err}
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, token)
	return err
}
