package meshtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// signRaw signs the JSON payload as is with the mesh's HS256 secret, so a
// test can put escapes in a claim that no JSON encoder would write.
func signRaw(payload string) string {
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(Secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

// A sub that is not valid Unicode text (a lone surrogate escape, or bytes
// that are not UTF-8) is refused with 401, as is the replacement character
// that JSON decoding turns them into: otherwise "\ud800x", "\udc00x",
// "\ufffdx" and "\xffx" would all be the same user "�x". Other non-ASCII
// user ids, escaped or not, work.
func TestSubMustBeUnicodeText(t *testing.T) {
	m := Start(t, Options{Gateways: 1, Routers: 1})
	exp := time.Now().Add(time.Hour).Unix()
	for _, sub := range []string{`\ud800x`, `\udc00x`, `\ufffdx`, "\xffx", `\ud83dx`} {
		t.Run(fmt.Sprintf("%q", sub), func(t *testing.T) {
			token := signRaw(fmt.Sprintf(`{"sub":"%s","exp":%d}`, sub, exp))
			c, resp, err := m.For(t).DialRaw(0, token, "")
			if err == nil {
				t.Fatalf("connected as %q", c.User)
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("response %v (%v), want 401", resp, err)
			}
			var body struct{ Code, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Code != messages.CodeUnauthorized {
				t.Fatalf("body %+v (%v)", body, err)
			}
			if !strings.Contains(body.Message, "sub") || !strings.Contains(body.Message, "U+FFFD") {
				t.Fatalf("message %q does not say what is wrong with sub", body.Message)
			}
		})
	}
	for raw, user := range map[string]string{
		`zoë 李`:          "zoë 李",
		`\u00e9mile`:     "émile",
		`\ud83d\ude00 x`: "😀 x", // a surrogate pair is one character
	} {
		t.Run(fmt.Sprintf("%q", raw), func(t *testing.T) {
			c, resp, err := m.For(t).DialRaw(0, signRaw(fmt.Sprintf(`{"sub":"%s","exp":%d}`, raw, exp)), "")
			if err != nil {
				t.Fatalf("refused: %v (%v)", err, resp)
			}
			if c.User != user {
				t.Fatalf("connected as %q, want %q", c.User, user)
			}
		})
	}
}

// An invite to a user id that JSON decoding could only make lossy (a lone
// surrogate escape) or that holds the replacement character is refused
// with bad_request, as no token can name such a user.
func TestInviteToMustBeUnicodeText(t *testing.T) {
	m := Start(t, Options{Gateways: 1, Routers: 1})
	alice := m.Dial(0, "alice")
	for i, to := range []string{`\ud800x`, `\udc00x`, `\ufffdx`} {
		id := fmt.Sprintf("inv%d", i)
		alice.SendRaw([]byte(fmt.Sprintf(`{"type":"invite","id":"%s","to":"%s"}`, id, to)))
		if e := alice.ExpectError(id, messages.CodeBadRequest); !strings.Contains(e.Message, "U+FFFD") {
			t.Fatalf("invite to %s: message %q does not say what is wrong", to, e.Message)
		}
	}
}
