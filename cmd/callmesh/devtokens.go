package main

import (
	"log/slog"

	"github.com/callmesh/callmesh/gateway"
)

// devTokensWarning is what a gateway with http.dev_tokens logs at start, at
// warn: anyone who reaches it can be anyone.
const devTokensWarning = "http.dev_tokens is on: GET /dev/token hands a token for any user to anyone who reaches this gateway; for a local stack only, never where others can reach it"

// gatewayDevTokens is what a gateway's GET /dev/token mints with when
// http.dev_tokens is on, and nil when it is off. It fails, naming the keys,
// when the jwt.* settings cannot sign a token (an asymmetric jwt.alg needs
// jwt.signing_key_file), and logs devTokensWarning when it is on.
func gatewayDevTokens(cfg *Config, log *slog.Logger) (*gateway.MintConfig, error) {
	if !cfg.HTTP.DevTokens {
		return nil, nil
	}
	mc, err := cfg.signer("http.dev_tokens")
	if err != nil {
		return nil, err
	}
	log.Warn(devTokensWarning, "token_ttl", cfg.Dev.TokenTTL)
	return &mc, nil
}
