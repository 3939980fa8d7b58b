package gateway

import (
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/callmesh/callmesh/messages"
)

// Grants are a token's room grants (PROTOCOL.md §14.6): the claim rooms
// lists the rooms its user may join, moderator those it may also kick
// members of, lock and unlock. Each entry is a room id, or a prefix ending
// in "*" that matches every room id starting with it ("*" matches all).
type Grants struct {
	Rooms     []string `json:"rooms,omitempty"`
	Moderator []string `json:"moderator,omitempty"`
}

// maxGrantPatterns bounds each list of a token's grants.
const maxGrantPatterns = 64

// validate reports why g cannot be a token's grants.
func (g Grants) validate() error {
	for name, list := range map[string][]string{"rooms": g.Rooms, "moderator": g.Moderator} {
		if len(list) > maxGrantPatterns {
			return fmt.Errorf("%s: %d patterns, the limit is %d", name, len(list), maxGrantPatterns)
		}
		for _, p := range list {
			if p == "*" {
				continue
			}
			if err := messages.ValidRoomID(strings.TrimSuffix(p, "*")); err != nil {
				return fmt.Errorf("%s: pattern %q: %w", name, p, err)
			}
		}
	}
	return nil
}

// matches reports whether one of patterns matches room.
func matches(patterns []string, room string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(room, prefix) || p == room {
			return true
		}
	}
	return false
}

// Join reports whether g lets its user join room (a moderator may too).
func (g Grants) Join(room string) bool {
	return matches(g.Rooms, room) || g.Moderate(room)
}

// Moderate reports whether g makes its user a moderator of room.
func (g Grants) Moderate(room string) bool { return matches(g.Moderator, room) }

// tokenClaims are the claims Verify reads and Mint writes.
type tokenClaims struct {
	jwt.RegisteredClaims
	Grants
}
