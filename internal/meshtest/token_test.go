package meshtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// Test 10: bad tokens are refused with 401 and a JSON body before any
// upgrade.
func TestBadTokens(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	keyFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(keyFile, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// Gateway 0 verifies HS256 with the mesh secret, gateway 1 RS256.
	m := Start(t, Options{Gateways: 1, Routers: 1})
	rsCfg := m.GatewayConfig()
	rsCfg.Auth = gateway.AuthConfig{Alg: "RS256", KeyFile: keyFile}
	m.opts.Gateway = func(c *gateway.Config) { *c = rsCfg }
	m.AddGateway()

	now := time.Now()
	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
	for _, tc := range []struct {
		name  string
		gw    int
		token string
	}{
		{"none", 0, ""},
		{"garbage", 0, "not.a.jwt"},
		{"expired", 0, sign(jwt.SigningMethodHS256, []byte(Secret), jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Hour).Unix()})},
		{"no exp", 0, sign(jwt.SigningMethodHS256, []byte(Secret), jwt.MapClaims{"sub": "alice"})},
		{"wrong key", 0, sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-0123456789"), valid)},
		{"alg none", 0, sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)},
		{"alg none on RS256", 1, sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid)},
		{"HS256 keyed with the RS256 public key", 1, sign(jwt.SigningMethodHS256, pubPEM, valid)},
		{"HS256 on RS256", 1, sign(jwt.SigningMethodHS256, []byte(Secret), valid)},
		{"empty sub", 0, sign(jwt.SigningMethodHS256, []byte(Secret), jwt.MapClaims{"sub": "", "exp": now.Add(time.Hour).Unix()})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := m.For(t).DialRaw(tc.gw, tc.token, "")
			if err == nil {
				t.Fatal("upgraded with a bad token")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("response %v, want 401", resp)
			}
			var body struct{ Code, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Code != messages.CodeUnauthorized || body.Message == "" {
				t.Fatalf("body %+v (%v)", body, err)
			}
		})
	}

	// The good tokens get in, by query and by header.
	m.Dial(0, "alice")
	rsTok := sign(jwt.SigningMethodRS256, key, jwt.MapClaims{"sub": "bob", "exp": now.Add(time.Hour).Unix()})
	ws, _, err := websocket.Dial(t.Context(), m.Gateways[1].URL, &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + rsTok}},
	})
	if err != nil {
		t.Fatalf("RS256 token by header: %v", err)
	}
	ws.CloseNow()
}

// A session whose token expires is closed with 4002; refresh with a token
// of the same user keeps it open, one of another user is refused.
func TestTokenExpiryAndRefresh(t *testing.T) {
	m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) { c.Auth.Leeway = 0 }})
	short := func(user string) string {
		tok, err := gateway.Mint(gateway.MintConfig{Alg: "HS256", Secret: Secret}, user, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expiring, _, err := m.DialRaw(0, short("alice"), "")
	if err != nil {
		t.Fatal(err)
	}
	if code := expiring.ExpectClosed(); code != messages.CloseTokenExpired {
		t.Fatalf("closed with %d, want %d", code, messages.CloseTokenExpired)
	}

	refreshed, _, err := m.DialRaw(0, short("bob"), "")
	if err != nil {
		t.Fatal(err)
	}
	refreshed.Expect(messages.TypeExpiring) // the one-minute warning comes at once
	refresh := func(id, token string) {
		refreshed.Send(&messages.Envelope{Type: messages.TypeRefresh, ID: id, Data: json.RawMessage(`{"token":"` + token + `"}`)})
	}
	refresh("r1", m.Token("mallory"))
	refreshed.ExpectError("r1", messages.CodeForbidden)
	refresh("r2", "garbage")
	refreshed.ExpectError("r2", messages.CodeForbidden)
	refresh("r3", m.Token("bob")) // an hour
	refreshed.ExpectAck("r3")
	// Well past the first token's expiry the session still answers.
	deadline := time.Now().Add(2500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		id := "p" + strconv.Itoa(i)
		refreshed.Send(&messages.Envelope{Type: messages.TypePing, ID: id})
		if e := refreshed.Expect(messages.TypePong); e.ID != id {
			t.Fatalf("pong %s, want %s", e.ID, id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
