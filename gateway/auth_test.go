package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testSecret = "0123456789abcdef0123456789abcdef" // 32 bytes
	testIss    = "https://issuer.test"
	testAud    = "callmesh"
)

// RSA keys are slow to make: share them across tests.
var (
	testRSAKey      = sync.OnceValue(func() *rsa.PrivateKey { return authGenRSA(2048) })
	testOtherRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return authGenRSA(2048) })
)

func authGenRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func authGenEC(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func authGenEd(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// authWriteFile writes data to a new file in t.TempDir and returns its path.
func authWriteFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func authPEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// authPublicPEM returns pub as a PKIX "PUBLIC KEY" PEM.
func authPublicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return authPEM("PUBLIC KEY", der)
}

// authPKCS8File writes priv as a PKCS#8 "PRIVATE KEY" PEM file.
func authPKCS8File(t *testing.T, priv any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return authWriteFile(t, authPEM("PRIVATE KEY", der))
}

// authClaims are valid for the test issuer and audience.
func authClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": "alice",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
		"iss": testIss,
		"aud": testAud,
	}
}

// authWith returns a copy of authClaims with key set to value (deleted when nil).
func authWith(key string, value any) jwt.MapClaims {
	c := authClaims()
	if value == nil {
		delete(c, key)
	} else {
		c[key] = value
	}
	return c
}

func authSign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authVerifier(t *testing.T, cfg AuthConfig) *Verifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v, err := NewVerifier(ctx, cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func authMustVerify(t *testing.T, v *Verifier, token, wantSub string) Claims {
	t.Helper()
	c, err := v.Verify(token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Subject != wantSub {
		t.Fatalf("Subject = %q, want %q", c.Subject, wantSub)
	}
	return c
}

func TestAuthHS256RoundTrip(t *testing.T) {
	v := authVerifier(t, AuthConfig{Alg: "HS256", Secret: testSecret, Issuer: testIss, Audience: testAud})
	claims := authClaims()
	c := authMustVerify(t, v, authSign(t, jwt.SigningMethodHS256, []byte(testSecret), claims, ""), "alice")
	if want := time.Unix(claims["exp"].(int64), 0); !c.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", c.Expires, want)
	}
	// User ids are opaque: dots, @ and any Unicode are fine, up to 256 bytes.
	for _, sub := range []string{"ünï.cødé@example.com", "a.b*c>d e", strings.Repeat("é", 128)} {
		authMustVerify(t, v, authSign(t, jwt.SigningMethodHS256, []byte(testSecret), authWith("sub", sub), ""), sub)
	}
}

func TestAuthRS256KeyFile(t *testing.T) {
	key := testRSAKey()
	tok := authSign(t, jwt.SigningMethodRS256, key, authClaims(), "")

	v := authVerifier(t, AuthConfig{Alg: "RS256", KeyFile: authWriteFile(t, authPublicPEM(t, &key.PublicKey))})
	authMustVerify(t, v, tok, "alice")

	// A certificate works as the key file too.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	v = authVerifier(t, AuthConfig{Alg: "RS256", KeyFile: authWriteFile(t, authPEM("CERTIFICATE", der))})
	authMustVerify(t, v, tok, "alice")
}

func TestAuthES256AndEdDSARoundTrip(t *testing.T) {
	ec := authGenEC(t, elliptic.P256())
	v := authVerifier(t, AuthConfig{Alg: "ES256", KeyFile: authWriteFile(t, authPublicPEM(t, &ec.PublicKey))})
	authMustVerify(t, v, authSign(t, jwt.SigningMethodES256, ec, authClaims(), ""), "alice")

	ed := authGenEd(t)
	v = authVerifier(t, AuthConfig{Alg: "EdDSA", KeyFile: authWriteFile(t, authPublicPEM(t, ed.Public()))})
	authMustVerify(t, v, authSign(t, jwt.SigningMethodEdDSA, ed, authClaims(), ""), "alice")
}

// authJWKSServer serves a mutable JWK Set and counts its fetches.
type authJWKSServer struct {
	*httptest.Server
	store   *jwkset.MemoryJWKSet
	fetches atomic.Int32
	fail    atomic.Bool
}

func newAuthJWKSServer(t *testing.T) *authJWKSServer {
	s := &authJWKSServer{store: jwkset.NewMemoryStorage()}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		raw, err := s.store.JSONPublic(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(raw)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authJWKSServer) add(t *testing.T, kid string, pub any) {
	t.Helper()
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.KeyWrite(context.Background(), jwk); err != nil {
		t.Fatal(err)
	}
}

// authEventually polls f until it returns nil or the deadline passes.
func authEventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 5s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuthJWKS relies on the periodic refresh (JWKSRefresh) to pick up a
// rotated key. keyfunc also refetches on an unknown kid, but at most once per
// 5 minutes; the unknown-kid check below spends that one refetch, so later
// lookups of unknown kids fail at once instead of waiting.
func TestAuthJWKS(t *testing.T) {
	a, b, c := authGenEC(t, elliptic.P256()), authGenEC(t, elliptic.P256()), authGenEC(t, elliptic.P256())
	srv := newAuthJWKSServer(t)
	srv.add(t, "a", &a.PublicKey)
	srv.add(t, "b", &b.PublicKey)

	v := authVerifier(t, AuthConfig{Alg: "ES256", JWKSURL: srv.URL, JWKSRefresh: 50 * time.Millisecond})
	tokA := authSign(t, jwt.SigningMethodES256, a, authClaims(), "a")
	authMustVerify(t, v, tokA, "alice")
	authMustVerify(t, v, authSign(t, jwt.SigningMethodES256, b, authWith("sub", "bob"), "b"), "bob")

	tokC := authSign(t, jwt.SigningMethodES256, c, authClaims(), "c")
	for name, tok := range map[string]string{
		"unknown kid":         tokC,
		"no kid":              authSign(t, jwt.SigningMethodES256, a, authClaims(), ""),
		"kid of another key":  authSign(t, jwt.SigningMethodES256, b, authClaims(), "a"),
		"HS256 with JWKS kid": authSign(t, jwt.SigningMethodHS256, []byte(testSecret), authClaims(), "a"),
	} {
		if _, err := v.Verify(tok); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("%s: Verify err = %v, want ErrTokenInvalid", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	// Rotation: a new kid is published, then an old one withdrawn.
	srv.add(t, "c", &c.PublicKey)
	authEventually(t, "new kid c", func() error { _, err := v.Verify(tokC); return err })
	if _, err := srv.store.KeyDelete(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	authEventually(t, "withdrawn kid a refused", func() error {
		if _, err := v.Verify(tokA); err == nil {
			return errors.New("kid a still accepted")
		}
		return nil
	})
}

// TestAuthJWKSStartupFetchFailure: keyfunc does not report a failed first
// fetch (it logs it), so NewVerifier succeeds, refuses tokens, and recovers
// on a later refresh.
func TestAuthJWKSStartupFetchFailure(t *testing.T) {
	a := authGenEC(t, elliptic.P256())
	srv := newAuthJWKSServer(t)
	srv.add(t, "a", &a.PublicKey)
	srv.fail.Store(true)

	v := authVerifier(t, AuthConfig{Alg: "ES256", JWKSURL: srv.URL, JWKSRefresh: 50 * time.Millisecond})
	tok := authSign(t, jwt.SigningMethodES256, a, authClaims(), "a")
	if _, err := v.Verify(tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("Verify with no keys: err = %v, want ErrTokenInvalid", err)
	}
	srv.fail.Store(false)
	authEventually(t, "recovery", func() error { _, err := v.Verify(tok); return err })
	if srv.fetches.Load() < 2 {
		t.Errorf("fetches = %d, want ≥ 2", srv.fetches.Load())
	}
}

// TestAuthJWKSUnknownKIDRefresh pins down keyfunc's refetch on an unknown
// kid: with no periodic refresh due, the first unknown kid refetches at once;
// the next within 5 minutes is refused without waiting.
func TestAuthJWKSUnknownKIDRefresh(t *testing.T) {
	a, c, d := authGenEC(t, elliptic.P256()), authGenEC(t, elliptic.P256()), authGenEC(t, elliptic.P256())
	srv := newAuthJWKSServer(t)
	srv.add(t, "a", &a.PublicKey)
	v := authVerifier(t, AuthConfig{Alg: "ES256", JWKSURL: srv.URL, JWKSRefresh: time.Hour})

	srv.add(t, "c", &c.PublicKey)
	authMustVerify(t, v, authSign(t, jwt.SigningMethodES256, c, authClaims(), "c"), "alice")

	srv.add(t, "d", &d.PublicKey)
	start := time.Now()
	_, err := v.Verify(authSign(t, jwt.SigningMethodES256, d, authClaims(), "d"))
	if !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("second unknown kid: err = %v, want ErrTokenInvalid (rate limited)", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("rate-limited unknown kid took %v, want no wait", took)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2 (startup + one unknown-kid refetch)", n)
	}
	t.Log(err)
}

func TestVerifyRefusals(t *testing.T) {
	rsaKey := testRSAKey()
	rsaPub := authPublicPEM(t, &rsaKey.PublicKey)
	hs := authVerifier(t, AuthConfig{Alg: "HS256", Secret: testSecret, Issuer: testIss, Audience: testAud})
	rs := authVerifier(t, AuthConfig{Alg: "RS256", KeyFile: authWriteFile(t, rsaPub), Issuer: testIss, Audience: testAud})
	small := authVerifier(t, AuthConfig{Alg: "HS256", Secret: testSecret, MaxTokenBytes: 100})

	hsSign := func(c jwt.MapClaims) string { return authSign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "") }
	now := time.Now()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, authClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		v     *Verifier
		token string
		want  error
	}{
		{"no token", hs, "", ErrNoToken},
		{"garbage", hs, "not.a.jwt", ErrTokenInvalid},
		{"one segment", hs, "garbage", ErrTokenInvalid},
		{"expired", hs, hsSign(authWith("exp", now.Add(-time.Minute).Unix())), ErrTokenExpired},
		{"no exp", hs, hsSign(authWith("exp", nil)), ErrTokenExpired},
		{"nbf in future", hs, hsSign(authWith("nbf", now.Add(time.Minute).Unix())), ErrTokenInvalid},
		{"iat in future", hs, hsSign(authWith("iat", now.Add(time.Minute).Unix())), ErrTokenInvalid},
		{"wrong secret", hs, authSign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), authClaims(), ""), ErrTokenInvalid},
		{"wrong RSA key", rs, authSign(t, jwt.SigningMethodRS256, testOtherRSAKey(), authClaims(), ""), ErrTokenInvalid},
		{"HS512 against HS256", hs, authSign(t, jwt.SigningMethodHS512, []byte(testSecret), authClaims(), ""), ErrTokenInvalid},
		{"PS256 against RS256", rs, authSign(t, jwt.SigningMethodPS256, rsaKey, authClaims(), ""), ErrTokenInvalid},
		{"alg none", hs, none, ErrTokenInvalid},
		{"alg none against RS256", rs, none, ErrTokenInvalid},
		// The classic key confusion: the public key PEM used as an HMAC secret.
		{"HS256 keyed with RSA public PEM", rs, authSign(t, jwt.SigningMethodHS256, rsaPub, authClaims(), ""), ErrTokenInvalid},
		{"wrong iss", hs, hsSign(authWith("iss", "https://evil.test")), ErrTokenInvalid},
		{"no iss", hs, hsSign(authWith("iss", nil)), ErrTokenInvalid},
		{"wrong aud", hs, hsSign(authWith("aud", "other")), ErrTokenInvalid},
		{"no aud", hs, hsSign(authWith("aud", nil)), ErrTokenInvalid},
		{"empty sub", hs, hsSign(authWith("sub", "")), ErrTokenInvalid},
		{"no sub", hs, hsSign(authWith("sub", nil)), ErrTokenInvalid},
		{"sub 257 bytes", hs, hsSign(authWith("sub", strings.Repeat("a", 257))), ErrTokenInvalid},
		{"sub not a string", hs, hsSign(authWith("sub", 42)), ErrTokenInvalid},
		{"oversized", hs, hsSign(authWith("pad", strings.Repeat("x", DefaultMaxTokenBytes))), ErrTokenTooLarge},
		{"over MaxTokenBytes", small, hsSign(authClaims()), ErrTokenTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(tc.token)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", c)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify err = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "gateway: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			t.Log(err)
		})
	}

	// The upper bound is inclusive. (An invalid UTF-8 sub reaches the check
	// as U+FFFD, which encoding/json puts in its place, and is refused as
	// such: see meshtest's TestSubMustBeUnicodeText.)
	authMustVerify(t, hs, hsSign(authWith("sub", strings.Repeat("a", 256))), strings.Repeat("a", 256))
}

func TestVerifyLeeway(t *testing.T) {
	v := authVerifier(t, AuthConfig{Alg: "HS256", Secret: testSecret, Leeway: time.Minute})
	now := time.Now()
	c := jwt.MapClaims{"sub": "alice", "exp": now.Add(-30 * time.Second).Unix(), "iat": now.Add(30 * time.Second).Unix()}
	authMustVerify(t, v, authSign(t, jwt.SigningMethodHS256, []byte(testSecret), c, ""), "alice")
	c["exp"] = now.Add(-2 * time.Minute).Unix()
	if _, err := v.Verify(authSign(t, jwt.SigningMethodHS256, []byte(testSecret), c, "")); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired beyond leeway: err = %v, want ErrTokenExpired", err)
	}
}

func TestTokenFromRequest(t *testing.T) {
	cases := []struct {
		name, auth, query, want string
	}{
		{"header", "Bearer h.e.ader", "", "h.e.ader"},
		{"lowercase bearer", "bearer h.e.ader", "", "h.e.ader"},
		{"header wins over query", "BEARER h.e.ader", "q.u.ery", "h.e.ader"},
		{"query", "", "q.u.ery", "q.u.ery"},
		{"other scheme falls back to query", "Basic dXNlcjpwYXNz", "q.u.ery", "q.u.ery"},
		{"empty bearer", "Bearer ", "", ""},
		{"neither", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := "/ws"
			if tc.query != "" {
				target += "?access_token=" + tc.query
			}
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if got := TokenFromRequest(r); got != tc.want {
				t.Fatalf("TokenFromRequest = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMint(t *testing.T) {
	rsaKey := testRSAKey()
	ec := authGenEC(t, elliptic.P256())
	ed := authGenEd(t)
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubFile := authWriteFile(t, authPublicPEM(t, &rsaKey.PublicKey))

	cases := []struct {
		name string
		mint MintConfig
		auth AuthConfig
	}{
		{"HS256", MintConfig{Alg: "HS256", Secret: testSecret},
			AuthConfig{Alg: "HS256", Secret: testSecret}},
		{"RS256 PKCS#1", MintConfig{Alg: "RS256", PrivateKeyFile: authWriteFile(t, authPEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)))},
			AuthConfig{Alg: "RS256", KeyFile: rsaPubFile}},
		{"PS256 PKCS#8", MintConfig{Alg: "PS256", PrivateKeyFile: authPKCS8File(t, rsaKey)},
			AuthConfig{Alg: "PS256", KeyFile: rsaPubFile}},
		{"ES256 SEC1", MintConfig{Alg: "ES256", PrivateKeyFile: authWriteFile(t, authPEM("EC PRIVATE KEY", ecDER))},
			AuthConfig{Alg: "ES256", KeyFile: authWriteFile(t, authPublicPEM(t, &ec.PublicKey))}},
		{"EdDSA PKCS#8", MintConfig{Alg: "EdDSA", PrivateKeyFile: authPKCS8File(t, ed)},
			AuthConfig{Alg: "EdDSA", KeyFile: authWriteFile(t, authPublicPEM(t, ed.Public()))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.mint.Issuer, tc.mint.Audience, tc.mint.KeyID = testIss, testAud, "k1"
			tc.auth.Issuer, tc.auth.Audience = testIss, testAud
			tok, err := Mint(tc.mint, "ünï@example.com", 10*time.Minute)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			c := authMustVerify(t, authVerifier(t, tc.auth), tok, "ünï@example.com")
			if d := time.Until(c.Expires); d < 9*time.Minute || d > 10*time.Minute {
				t.Errorf("Expires in %v, want about 10m", d)
			}
			parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
			if err != nil {
				t.Fatal(err)
			}
			mc := parsed.Claims.(jwt.MapClaims)
			if parsed.Header["kid"] != "k1" || mc["iss"] != testIss || mc["nbf"] != mc["iat"] {
				t.Errorf("header %v claims %v: want kid k1, iss, nbf = iat", parsed.Header, mc)
			}
		})
	}

	// A minted token verifies through a JWKS too, its kid choosing the key.
	srv := newAuthJWKSServer(t)
	srv.add(t, "k1", &ec.PublicKey)
	tok, err := Mint(MintConfig{Alg: "ES256", PrivateKeyFile: authWriteFile(t, authPEM("EC PRIVATE KEY", ecDER)), KeyID: "k1"}, "bob", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	authMustVerify(t, authVerifier(t, AuthConfig{Alg: "ES256", JWKSURL: srv.URL}), tok, "bob")
}

func TestMintRefusals(t *testing.T) {
	hs := MintConfig{Alg: "HS256", Secret: testSecret}
	ecFile := authPKCS8File(t, authGenEC(t, elliptic.P256()))
	cases := []struct {
		name    string
		cfg     MintConfig
		subject string
		ttl     time.Duration
		want    error
	}{
		{"empty subject", hs, "", time.Minute, ErrMint},
		{"subject 257 bytes", hs, strings.Repeat("a", 257), time.Minute, ErrMint},
		{"subject not UTF-8", hs, "a\xff", time.Minute, ErrMint},
		{"zero ttl", hs, "alice", 0, ErrMint},
		{"negative ttl", hs, "alice", -time.Minute, ErrMint},
		{"unknown alg", MintConfig{Alg: "none", Secret: testSecret}, "alice", time.Minute, ErrAuthConfig},
		{"short secret", MintConfig{Alg: "HS256", Secret: "short"}, "alice", time.Minute, ErrAuthConfig},
		{"RS256 without key", MintConfig{Alg: "RS256"}, "alice", time.Minute, ErrAuthConfig},
		{"RS256 with EC key", MintConfig{Alg: "RS256", PrivateKeyFile: ecFile}, "alice", time.Minute, ErrAuthConfig},
		{"secret and key", MintConfig{Alg: "ES256", Secret: testSecret, PrivateKeyFile: ecFile}, "alice", time.Minute, ErrAuthConfig},
		{"public key as private", MintConfig{Alg: "ES256", PrivateKeyFile: authWriteFile(t, authPublicPEM(t, &authGenEC(t, elliptic.P256()).PublicKey))}, "alice", time.Minute, ErrAuthConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Mint(tc.cfg, tc.subject, tc.ttl)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Mint = %q, %v; want error %v", tok, err, tc.want)
			}
		})
	}
}

func TestAuthConfigErrors(t *testing.T) {
	rsaFile := authWriteFile(t, authPublicPEM(t, &testRSAKey().PublicKey))
	ecFile := authWriteFile(t, authPublicPEM(t, &authGenEC(t, elliptic.P256()).PublicKey))
	p384File := authWriteFile(t, authPublicPEM(t, &authGenEC(t, elliptic.P384()).PublicKey))
	smallRSAFile := authWriteFile(t, authPublicPEM(t, &authGenRSA(1024).PublicKey))
	privFile := authPKCS8File(t, authGenEC(t, elliptic.P256()))
	garbageFile := authWriteFile(t, []byte("this is not PEM"))
	badDERFile := authWriteFile(t, authPEM("PUBLIC KEY", []byte("garbage")))
	missing := filepath.Join(t.TempDir(), "missing.pem")

	cases := []struct {
		name string
		cfg  AuthConfig
	}{
		{"no alg", AuthConfig{Secret: testSecret}},
		{"unknown alg", AuthConfig{Alg: "XS256", Secret: testSecret}},
		{"alg none", AuthConfig{Alg: "none", Secret: testSecret}},
		{"lowercase alg", AuthConfig{Alg: "hs256", Secret: testSecret}},
		{"HS256 without secret", AuthConfig{Alg: "HS256"}},
		{"HS256 short secret", AuthConfig{Alg: "HS256", Secret: testSecret[:31]}},
		{"HS256 with key file", AuthConfig{Alg: "HS256", KeyFile: rsaFile}},
		{"HS256 with JWKS", AuthConfig{Alg: "HS256", JWKSURL: "https://idp.test/jwks"}},
		{"HS256 secret and key file", AuthConfig{Alg: "HS256", Secret: testSecret, KeyFile: rsaFile}},
		{"RS256 no key source", AuthConfig{Alg: "RS256"}},
		{"RS256 KeyFile and JWKSURL", AuthConfig{Alg: "RS256", KeyFile: rsaFile, JWKSURL: "https://idp.test/jwks"}},
		{"RS256 with secret", AuthConfig{Alg: "RS256", Secret: testSecret}},
		{"RS256 EC key", AuthConfig{Alg: "RS256", KeyFile: ecFile}},
		{"RS256 1024-bit key", AuthConfig{Alg: "RS256", KeyFile: smallRSAFile}},
		{"ES256 RSA key", AuthConfig{Alg: "ES256", KeyFile: rsaFile}},
		{"ES256 P-384 key", AuthConfig{Alg: "ES256", KeyFile: p384File}},
		{"EdDSA EC key", AuthConfig{Alg: "EdDSA", KeyFile: ecFile}},
		{"missing key file", AuthConfig{Alg: "RS256", KeyFile: missing}},
		{"garbage key file", AuthConfig{Alg: "RS256", KeyFile: garbageFile}},
		{"garbage DER", AuthConfig{Alg: "RS256", KeyFile: badDERFile}},
		{"private key as public", AuthConfig{Alg: "ES256", KeyFile: privFile}},
		{"JWKS URL not http", AuthConfig{Alg: "RS256", JWKSURL: "ftp://idp.test/jwks"}},
		{"negative leeway", AuthConfig{Alg: "HS256", Secret: testSecret, Leeway: -time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(context.Background(), tc.cfg)
			if !errors.Is(err, ErrAuthConfig) {
				t.Fatalf("NewVerifier = %v, %v; want ErrAuthConfig", v, err)
			}
			t.Log(err)
		})
	}
}
