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
	// ErrAuthConfig: an AuthConfig or MintConfig that cannot work.
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
	if _, err := signingMethod(cfg.Alg); err != nil {
		return nil, err
	}
	if cfg.Leeway < 0 || cfg.JWKSRefresh < 0 || cfg.MaxTokenBytes < 0 {
		return nil, fmt.Errorf("%w: Leeway, JWKSRefresh and MaxTokenBytes must not be negative", ErrAuthConfig)
	}
	v := &Verifier{maxBytes: cfg.MaxTokenBytes}
	if v.maxBytes == 0 {
		v.maxBytes = DefaultMaxTokenBytes
	}

	sources := 0
	for _, s := range []string{cfg.Secret, cfg.KeyFile, cfg.JWKSURL} {
		if s != "" {
			sources++
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("%w: set exactly one of Secret, KeyFile or JWKSURL (%d set)", ErrAuthConfig, sources)
	}

	switch {
	case isHMAC(cfg.Alg):
		key, err := hmacKey(cfg.Alg, cfg.Secret)
		if err != nil {
			return nil, err
		}
		v.keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	case cfg.Secret != "":
		return nil, fmt.Errorf("%w: %s needs KeyFile or JWKSURL, not Secret", ErrAuthConfig, cfg.Alg)
	case cfg.KeyFile != "":
		key, err := loadPublicKey(cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		if err := checkKeyForAlg(cfg.Alg, key); err != nil {
			return nil, fmt.Errorf("%w (%s)", err, cfg.KeyFile)
		}
		v.keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	default:
		kf, err := newJWKSKeyfunc(ctx, cfg)
		if err != nil {
			return nil, err
		}
		v.keyFunc = kf
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
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: JWKSURL %q is not an http(s) URL", ErrAuthConfig, cfg.JWKSURL)
	}
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
		return nil, fmt.Errorf("%w: JWKS %s: %w", ErrAuthConfig, cfg.JWKSURL, err)
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
		return nil, fmt.Errorf("%w: no alg", ErrAuthConfig)
	}
	return nil, fmt.Errorf("%w: unknown alg %q", ErrAuthConfig, alg)
}

func isHMAC(alg string) bool { return strings.HasPrefix(alg, "HS") }

// hmacKey checks an HS* secret.
func hmacKey(alg, secret string) ([]byte, error) {
	if secret == "" {
		return nil, fmt.Errorf("%w: %s needs Secret", ErrAuthConfig, alg)
	}
	if len(secret) < minSecretBytes {
		return nil, fmt.Errorf("%w: %s secret is %d bytes, at least %d needed", ErrAuthConfig, alg, len(secret), minSecretBytes)
	}
	return []byte(secret), nil
}

// checkKeyForAlg reports whether the public key pub suits alg.
func checkKeyForAlg(alg string, pub crypto.PublicKey) error {
	ok := false
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: RSA key of %d bits, at least %d needed", ErrAuthConfig, k.N.BitLen(), minRSABits)
		}
		ok = strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		curve := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		ok = curve != "" && k.Curve.Params().Name == curve
	case ed25519.PublicKey:
		ok = alg == "EdDSA"
	}
	if !ok {
		return fmt.Errorf("%w: %s key does not suit alg %s", ErrAuthConfig, pubKeyKind(pub), alg)
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
		return nil, fmt.Errorf("%w: %w", ErrAuthConfig, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM block", ErrAuthConfig, file)
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
		return nil, fmt.Errorf("%w: %s holds a %q PEM block, want a PUBLIC KEY or CERTIFICATE", ErrAuthConfig, file, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrAuthConfig, file, err)
	}
	return key, nil
}
