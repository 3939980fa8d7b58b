package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestGrantsMatch(t *testing.T) {
	g := Grants{Rooms: []string{"team-*", "standup", "a.b"}, Moderator: []string{"team-ops"}}
	for room, want := range map[string]bool{
		"team-": true, "team-x": true, "team-*": true, "team": false, "standup": true, "standup2": false,
		"a.b": true, "a": false, "team-ops": true, "Standup": false, "": false,
	} {
		if got := g.Join(room); got != want {
			t.Errorf("Join(%q) = %v, want %v", room, got, want)
		}
	}
	if !g.Moderate("team-ops") || g.Moderate("team-x") {
		t.Error("moderator grant")
	}
	if !(Grants{Moderator: []string{"*"}}).Join("anything") {
		t.Error("a moderator of every room may join every room")
	}
	if (Grants{}).Join("x") {
		t.Error("no grant joins nothing")
	}
}

// A token whose grants are not lists of room patterns is refused as
// invalid; a valid one hands its grants to the session.
func TestVerifyGrants(t *testing.T) {
	v := authVerifier(t, AuthConfig{Alg: "HS256", Secret: testSecret, Issuer: testIss, Audience: testAud})
	sign := func(claims jwt.MapClaims) string {
		return authSign(t, jwt.SigningMethodHS256, []byte(testSecret), claims, "")
	}
	c, err := v.Verify(sign(authWith("rooms", []string{"team-*"})))
	if err != nil || !c.Grants.Join("team-a") {
		t.Fatalf("grants %+v, err %v", c.Grants, err)
	}
	many := make([]string, maxGrantPatterns+1)
	for i := range many {
		many[i] = "r"
	}
	for name, claims := range map[string]jwt.MapClaims{
		"rooms a string":     authWith("rooms", "team-*"),
		"moderator a number": authWith("moderator", 7),
		"empty pattern":      authWith("rooms", []string{""}),
		"too many patterns":  authWith("rooms", many),
		"long pattern":       authWith("moderator", []string{strings.Repeat("x", 300)}),
	} {
		if _, err := v.Verify(sign(claims)); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("%s: err %v, want ErrTokenInvalid", name, err)
		}
	}
}
