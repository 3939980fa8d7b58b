package gateway

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/callmesh/callmesh/messages"
)

// ErrMint is returned by Mint for an illegal subject or ttl; a MintConfig that
// cannot sign gives ErrAuthConfig.
var ErrMint = errors.New("gateway: cannot mint token")

// MintConfig is what Mint needs to sign a token. It mirrors AuthConfig: the
// same Alg, and the private half of its key.
type MintConfig struct {
	// Alg is one of the algorithms AuthConfig accepts.
	Alg string
	// Secret is the shared secret for HS* (at least 32 bytes).
	Secret string
	// PrivateKeyFile is a PEM private key for RS*/PS*/ES*/EdDSA: PKCS#8
	// "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY".
	PrivateKeyFile string
	// Issuer, when set, becomes the iss claim.
	Issuer string
	// Audience, when set, becomes the aud claim.
	Audience string
	// KeyID, when set, becomes the kid header (needed by JWKS verifiers).
	KeyID string
}

// Mint signs a token for subject valid from now for ttl: it sets sub, iat,
// nbf = iat, exp = iat + ttl, iss and aud when configured, and the kid header
// when KeyID is set. It refuses a subject that is not a legal user id and a
// ttl ≤ 0.
func Mint(cfg MintConfig, subject string, ttl time.Duration) (string, error) {
	return MintGrants(cfg, subject, ttl, Grants{})
}

// MintGrants is Mint with room grants: the claims rooms and moderator.
func MintGrants(cfg MintConfig, subject string, ttl time.Duration, grants Grants) (string, error) {
	if err := grants.validate(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrMint, err)
	}
	if err := messages.ValidUserID(subject); err != nil {
		return "", fmt.Errorf("%w: subject: %w", ErrMint, err)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("%w: ttl %v is not positive", ErrMint, ttl)
	}
	method, err := signingMethod(cfg.Alg)
	if err != nil {
		return "", err
	}
	key, err := signingKey(cfg)
	if err != nil {
		return "", err
	}

	now := time.Now()
	claims := tokenClaims{Grants: grants, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		Issuer:    cfg.Issuer,
	}}
	if cfg.Audience != "" {
		claims.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	token := jwt.NewWithClaims(method, claims)
	if cfg.KeyID != "" {
		token.Header["kid"] = cfg.KeyID
	}
	s, err := token.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("%w: sign: %w", ErrMint, err)
	}
	return s, nil
}

// signingKey returns the key cfg signs with, checked against cfg.Alg.
func signingKey(cfg MintConfig) (any, error) {
	if cfg.Secret != "" && cfg.PrivateKeyFile != "" {
		return nil, authError("set a secret or a private key file, not both", "Secret", "PrivateKeyFile")
	}
	if isHMAC(cfg.Alg) {
		return hmacKey(cfg.Alg, cfg.Secret)
	}
	if cfg.PrivateKeyFile == "" {
		return nil, authError(cfg.Alg+" signs with a private key file", "PrivateKeyFile", "Alg")
	}
	key, err := loadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return nil, authError(err.Error(), "PrivateKeyFile")
	}
	if err := checkKeyForAlg(cfg.Alg, key.Public()); err != nil {
		return nil, authError(err.Error(), "PrivateKeyFile", "Alg")
	}
	return key, nil
}

// loadPrivateKey reads a PEM private key that can sign.
func loadPrivateKey(file string) (crypto.Signer, error) {
	block, err := readPEM(file)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s holds a %q PEM block, want an unencrypted private key", file, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T cannot sign", file, key)
	}
	return signer, nil
}
