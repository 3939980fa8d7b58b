package meshtest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
)

// GrantToken mints a token for user with room grants.
func (m *Mesh) GrantToken(user string, grants gateway.Grants) string {
	m.t.Helper()
	tok, err := gateway.MintGrants(gateway.MintConfig{Alg: "HS256", Secret: Secret}, user, time.Hour, grants)
	if err != nil {
		m.t.Fatal(err)
	}
	return tok
}

// DialGrants connects user to gateway g with a token carrying grants.
func (m *Mesh) DialGrants(g int, user string, grants gateway.Grants) *Client {
	m.t.Helper()
	c, resp, err := m.DialRaw(g, m.GrantToken(user, grants), "")
	if err != nil {
		m.t.Fatalf("dial %q: %v (%v)", user, err, resp)
	}
	return c
}

// Everywhere grants every room.
var Everywhere = gateway.Grants{Rooms: []string{"*"}}

// Join sends join{room} and expects its ack, then joined; it returns the
// joined message.
func (c *Client) Join(room string) *messages.Envelope {
	c.t.Helper()
	id := "join-" + messages.NewID()[:8]
	c.Send(&messages.Envelope{Type: messages.TypeJoin, ID: id, Room: room})
	if ack := c.ExpectAck(id); ack.Room != room {
		c.t.Fatalf("%s: ack of join names room %q, want %q", c, ack.Room, room)
	}
	joined := c.Expect(messages.TypeJoined)
	if joined.Room != room {
		c.t.Fatalf("%s: joined %q, want %q", c, joined.Room, room)
	}
	return joined
}

// JoinRefused sends join{room} and expects error code.
func (c *Client) JoinRefused(room, code string) {
	c.t.Helper()
	id := "join-" + messages.NewID()[:8]
	c.Send(&messages.Envelope{Type: messages.TypeJoin, ID: id, Room: room})
	c.ExpectError(id, code)
}

// RoomDo sends a room request of type typ (leave, lock, unlock, or kick of
// conn) and expects its ack.
func (c *Client) RoomDo(typ, room, conn string) {
	c.t.Helper()
	id := typ + "-" + messages.NewID()[:8]
	c.Send(&messages.Envelope{Type: typ, ID: id, Room: room, Conn: conn})
	c.ExpectAck(id)
}

// Member is c as a room member.
func (c *Client) Member() messages.RoomMember {
	return messages.RoomMember{User: c.User, Conn: c.Conn}
}

// ExpectMembers fails unless joined lists exactly want, in order.
func ExpectMembers(c *Client, joined *messages.Envelope, want ...*Client) {
	c.t.Helper()
	got := fmt.Sprint(joined.Members)
	wantMembers := make([]messages.RoomMember, len(want))
	for i, w := range want {
		wantMembers[i] = w.Member()
	}
	if got != fmt.Sprint(wantMembers) {
		c.t.Fatalf("%s: joined %s lists %s, want %s", c, joined.Room, got, fmt.Sprint(wantMembers))
	}
}

// ExpectMemberJoined expects member_joined{room, who}.
func (c *Client) ExpectMemberJoined(room string, who *Client) {
	c.t.Helper()
	e := c.Expect(messages.TypeMemberJoined)
	if e.Room != room || e.Member == nil || *e.Member != who.Member() {
		c.t.Fatalf("%s: expected member_joined{%s, %s}, got %s", c, room, who, describe(e))
	}
}

// ExpectMemberLeft expects member_left{room, who, reason}.
func (c *Client) ExpectMemberLeft(room string, who *Client, reason string) {
	c.t.Helper()
	e := c.Expect(messages.TypeMemberLeft)
	if e.Room != room || e.Member == nil || *e.Member != who.Member() || e.Reason != reason {
		c.t.Fatalf("%s: expected member_left{%s, %s, %s}, got %s", c, room, who, reason, describe(e))
	}
}

// RoomSignal sends signal{room, to_conn: to, data {"n":n}} and expects its ack.
func (c *Client) RoomSignal(room string, to *Client, n int) {
	c.t.Helper()
	id := fmt.Sprintf("rsig-%d", n)
	c.Send(&messages.Envelope{Type: messages.TypeSignal, ID: id, Room: room, ToConn: to.Conn, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
	c.ExpectAck(id)
}

// ExpectRoomSignal expects the room signal {"n":n} from member from.
func (c *Client) ExpectRoomSignal(room string, from *Client, n int) {
	c.t.Helper()
	e := c.Expect(messages.TypeSignal)
	if want := fmt.Sprintf(`{"n":%d}`, n); e.Room != room || e.From != from.User || e.FromConn != from.Conn || string(e.Data) != want || e.Call != "" {
		c.t.Fatalf("%s: expected room signal %s of %s from %s, got %s", c, want, room, from, describe(e))
	}
}
