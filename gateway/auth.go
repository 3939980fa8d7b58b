package gateway

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/callmesh/callmesh/internal/fielderr"
	"github.com/callmesh/callmesh/messages"
)

// Errors returned by Verify. Any error from Verify means the request is
// refused with 401; ErrTokenExpired is kept apart so that callers can tell an
// expired session from a forged one.
var (
	// ErrNoToken: the request carried no token.
	ErrNoToken = errors.New("gateway: no token")
	// ErrTokenTooLarge: the token is longer than AuthConfig.MaxTokenBytes.
	ErrTokenTooLarge = errors.New("gateway: token too large")
	// ErrTokenExpired: the token's exp has passed (beyond the leeway), or it has no exp.
	ErrTokenExpired = errors.New("gateway: token expired")
	// ErrTokenInvalid: anything else: malformed, bad signature, wrong alg or
	// key, unknown kid, not yet valid, wrong iss/aud, or an illegal sub.
	ErrTokenInvalid = errors.New("gateway: invalid token")
	// ErrAuthConfig: an AuthConfig or MintConfig that cannot work. Such
	// an error is a *fielderr.Error naming the fields it is about.
	ErrAuthConfig = errors.New("gateway: auth config")
)

// Defaults applied by NewVerifier to zero fields of AuthConfig.
const (
	DefaultJWKSRefresh   = 5 * time.Minute
	DefaultMaxTokenBytes = 8192
)

const (
	minSecretBytes = 32
	minRSABits     = 2048
	// jwksHTTPTimeout bounds each JWKS fetch, including the one NewVerifier
	// makes before it returns.
	jwksHTTPTimeout = 10 * time.Second
	// jwksUnknownKIDWait bounds how long Verify may block on a token with an
	// unknown kid: waiting for keyfunc's refresh rate limiter plus the fetch.
	jwksUnknownKIDWait = 5 * time.Second
)

// AuthConfig configures token verification. Exactly one key source must be
// set, matching Alg.
type AuthConfig struct {
	// Alg is the one accepted algorithm: HS256, HS384, HS512, RS256, RS384,
	// RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA. It is never
	// taken from the token.
	Alg string
	// Secret is the shared secret for HS*; at least 32 bytes.
	Secret string
	// KeyFile is a PEM file holding the public key for RS*/PS*/ES*/EdDSA: a
	// PKIX "PUBLIC KEY", a PKCS#1 "RSA PUBLIC KEY" or a "CERTIFICATE".
	KeyFile string
	// JWKSURL is a JWK Set URL for RS*/PS*/ES*/EdDSA. Tokens must name their
	// key with the kid header; an unknown kid is refused.
	JWKSURL string
	// JWKSRefresh is how often the JWK Set is fetched again (default 5m).
	JWKSRefresh time.Duration
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud.
	Audience string
	// Leeway is the clock skew allowed for exp, nbf and iat.
	Leeway time.Duration
	// MaxTokenBytes refuses longer tokens before parsing (default 8192).
	MaxTokenBytes int
}

// Validate reports what is wrong with c, reading KeyFile but not fetching
// JWKSURL (NewVerifier does); nil if nothing. The error is an ErrAuthConfig
// and a *fielderr.Error naming the fields.
func (c AuthConfig) Validate() error {
	_, err := c.staticKey()
	return err
}

// staticKey checks c and returns the key it verifies with: the secret
// (HS*) or the public key of KeyFile; nil for JWKSURL, whose keys are
// fetched.
func (c AuthConfig) staticKey() (any, error) {
	if _, err := signingMethod(c.Alg); err != nil {
		return nil, err
	}
	for _, n := range []struct {
		field    string
		negative bool
	}{{"Leeway", c.Leeway < 0}, {"JWKSRefresh", c.JWKSRefresh < 0}, {"MaxTokenBytes", c.MaxTokenBytes < 0}} {
		if n.negative {
			return nil, authError("must not be negative", n.field)
		}
	}
	sources := 0
	for _, s := range []string{c.Secret, c.KeyFile, c.JWKSURL} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		return nil, authError(fmt.Sprintf("set exactly one: a secret, a public key file or a JWKS URL (%d set)", sources), "Secret", "KeyFile", "JWKSURL")
	}
	switch {
	case isHMAC(c.Alg):
		return hmacKey(c.Alg, c.Secret)
	case c.Secret != "":
		return nil, authError(c.Alg+" verifies with a public key file or a JWKS URL, not a secret", "Secret", "Alg")
	case c.KeyFile != "":
		key, err := loadPublicKey(c.KeyFile)
		if err != nil {
			return nil, authError(err.Error(), "KeyFile")
		}
		if err := checkKeyForAlg(c.Alg, key); err != nil {
			return nil, authError(err.Error(), "KeyFile", "Alg")
		}
		return key, nil
	}
	if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, authError("must be an http(s) URL", "JWKSURL")
	}
	return nil, nil
}

// Claims is what the gateway needs from a verified token.
type Claims struct {
	Subject string    // the user id (sub)
	Expires time.Time // exp
	Grants  Grants    // rooms and moderator
}

// Verifier checks tokens against one AuthConfig. It is safe for concurrent use.
type Verifier struct {
	parser   *jwt.Parser
	keyFunc  jwt.Keyfunc
	maxBytes int
}

// NewVerifier validates cfg and returns a Verifier for it. With JWKSURL it
// fetches the key set once before returning and then every JWKSRefresh until
// ctx is done. A failed first fetch is not an error (keyfunc logs it through
// slog and tokens are refused until a later fetch succeeds); a malformed URL is.
func NewVerifier(ctx context.Context, cfg AuthConfig) (*Verifier, error) {
	key, err := cfg.staticKey()
	if err != nil {
		return nil, err
	}
	v := &Verifier{maxBytes: cfg.MaxTokenBytes}
	if v.maxBytes == 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}
	if key != nil {
		v.keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	} else if v.keyFunc, err = newJWKSKeyfunc(ctx, cfg); err != nil {
		return nil, err
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{cfg.Alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// newJWKSKeyfunc starts keyfunc on cfg.JWKSURL. Besides the periodic refresh,
// keyfunc fetches the set again when a token names an unknown kid, at most
// once per 5 minutes (its default limiter); Verify waits at most
// jwksUnknownKIDWait for that, and a token without kid is refused rather than
// tried against every key.
func newJWKSKeyfunc(ctx context.Context, cfg AuthConfig) (jwt.Keyfunc, error) {
	refresh := cfg.JWKSRefresh
	if refresh == 0 {
		refresh = DefaultJWKSRefresh
	}
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		HTTPTimeout:      jwksHTTPTimeout,
		RefreshInterval:  refresh,
		RateLimitWaitMax: jwksUnknownKIDWait,
	})
	if err != nil {
		return nil, authError(fmt.Sprintf("%s: %v", cfg.JWKSURL, err), "JWKSURL")
	}
	return func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid in the token header")
		}
		key, err := kf.Keyfunc(t)
		if err != nil {
			// keyfunc joins errors with newlines; keep messages on one line.
			return nil, fmt.Errorf("kid %q: %s", kid, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		return key, nil
	}, nil
}

// Verify checks token and returns its claims. It refuses an empty or
// oversized token, a bad signature, any alg but the configured one, a token
// without exp or sub, one that is expired, not yet valid or issued in the
// future (all within Leeway), a wrong iss or aud, and a sub that is not a
// legal user id.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrNoToken
	}
	if len(token) > v.maxBytes {
		return Claims{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTokenTooLarge, len(token), v.maxBytes)
	}
	var tc tokenClaims
	rc := &tc.RegisteredClaims
	if _, err := v.parser.ParseWithClaims(token, &tc, v.keyFunc); err != nil {
		// Claims errors come only after the signature checked out, so rc can
		// be trusted to tell a missing exp from the rest.
		if errors.Is(err, jwt.ErrTokenInvalidClaims) {
			if rc.ExpiresAt == nil {
				return Claims{}, fmt.Errorf("%w: no exp claim", ErrTokenExpired)
			}
			if errors.Is(err, jwt.ErrTokenExpired) {
				return Claims{}, fmt.Errorf("%w: %w", ErrTokenExpired, err)
			}
		}
		return Claims{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if err := messages.ValidUserID(rc.Subject); err != nil {
		return Claims{}, fmt.Errorf("%w: sub: %w", ErrTokenInvalid, err)
	}
	if err := tc.Grants.validate(); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	return Claims{Subject: rc.Subject, Expires: rc.ExpiresAt.Time, Grants: tc.Grants}, nil
}

// TokenFromRequest returns the token of r: from "Authorization: Bearer <jwt>"
// (the scheme in any case), else from the access_token query parameter, else "".
func TokenFromRequest(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok
		}
	}
	return r.URL.Query().Get("access_token")
}

// signingMethod returns the jwt method for one of the accepted algs.
func signingMethod(alg string) (jwt.SigningMethod, error) {
	switch alg {
	case "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
		"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return jwt.GetSigningMethod(alg), nil
	case "":
		return nil, authError("must be set", "Alg")
	}
	return nil, authError("must be one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512, EdDSA", "Alg")
}

func isHMAC(alg string) bool { return strings.HasPrefix(alg, "HS") }

// hmacKey checks an HS* secret, the field Secret of an AuthConfig or a
// MintConfig.
func hmacKey(alg, secret string) ([]byte, error) {
	if secret == "" {
		return nil, authError(alg+" needs a secret", "Secret", "Alg")
	}
	if len(secret) < minSecretBytes {
		return nil, authError(fmt.Sprintf("%s needs at least %d bytes", alg, minSecretBytes), "Secret")
	}
	return []byte(secret), nil
}

// authError is an ErrAuthConfig about fields of an AuthConfig or a
// MintConfig.
func authError(reason string, fields ...string) error {
	return fielderr.New(reason, fields...).Of(ErrAuthConfig)
}

// checkKeyForAlg reports whether the public key pub suits alg.
func checkKeyForAlg(alg string, pub crypto.PublicKey) error {
	ok := false
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, at least %d needed", k.N.BitLen(), minRSABits)
		}
		ok = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		curve := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		ok = curve != "" && k.Curve.Params().Name == curve
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fmt.Errorf("%s key does not suit %s", pubKeyKind(pub), alg)
	}
	return nil
}

// pubKeyKind names a key's type for error messages.
func pubKeyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// readPEM returns the first PEM block of file.
func readPEM(file string) (*pem.Block, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", file)
	}
	return block, nil
}

// loadPublicKey reads a PEM public key or certificate.
func loadPublicKey(file string) (crypto.PublicKey, error) {
	block, err := readPEM(file)
	if err != nil {
		return nil, err
	}
	var key crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("%s holds a %q PEM block, want a PUBLIC KEY or CERTIFICATE", file, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return key, nil
}
