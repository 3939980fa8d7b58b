package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Router operations a gateway requests.
const (
	OpInvite = "invite"
	OpAccept = "accept"
	OpReject = "reject"
	OpHangup = "hangup"
	// OpLeave reports that a connection is gone for good (bye, or a drop
	// that was not resumed within the grace period).
	OpLeave = "leave"
	// OpAttach reports a newly registered connection, so that a call already
	// ringing for its user rings it too.
	OpAttach = "attach"
	// OpResume asks for the live calls of a connection that resumed, with
	// the bindings its new gateway needs to relay signal.
	OpResume = "resume"
	// Room operations (PROTOCOL.md §14). A room ring is OpInvite with Room;
	// moving a call into a room is OpInvite with Room and MoveCall.
	OpJoin      = "join"
	OpRoomLeave = "room_leave"
	OpKick      = "kick"
	OpLock      = "lock"
	OpUnlock    = "unlock"
)

// Request is the payload a gateway sends to the router queue group. Only
// gateways publish it: User and Conn are the authenticated sender.
type Request struct {
	Op      string          `json:"op"`
	User    string          `json:"user"`
	Conn    string          `json:"conn"`
	Gateway string          `json:"gw,omitempty"`
	Call    string          `json:"call,omitempty"`
	To      string          `json:"to,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Bye     bool            `json:"bye,omitempty"`
	// Room is the room of a room request; Target the kicked connection.
	Room   string `json:"room,omitempty"`
	Target string `json:"target,omitempty"`
	// MoveCall, with OpInvite and Room: the accepted call to move into the
	// new room first (PROTOCOL.md §14.7).
	MoveCall string `json:"move_call,omitempty"`
	// Granted and Moderator are what the session's current token grants for
	// Room (claims rooms and moderator), as the gateway verified it.
	Granted   bool `json:"granted,omitempty"`
	Moderator bool `json:"moderator,omitempty"`
	// InviteOnly asks for an invite-only room, if this request creates it.
	InviteOnly bool `json:"invite_only,omitempty"`
}

// Reply answers a Request. An empty Code means success: the gateway acks the
// client's request, then sends Then to the same connection in order.
type Reply struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Call    string `json:"call,omitempty"`
	// Room names the room a room request was about, for its ack.
	Room string      `json:"room,omitempty"`
	Bind *Binding    `json:"bind,omitempty"`
	Then []*Envelope `json:"then,omitempty"`
	// Calls answers OpResume: the connection's live calls.
	Calls []ResumedCall `json:"calls,omitempty"`
	// Rooms answers OpResume: the rooms the connection is a member of.
	Rooms []RoomInfo `json:"rooms,omitempty"`
}

// ResumedCall is one live call of a resumed connection: what welcome lists,
// and the peer's connection once the call is accepted.
type ResumedCall struct {
	CallInfo
	PeerConn string `json:"peer_conn,omitempty"`
}

// Binding tells a gateway which connection is the other party of an accepted
// call, so signal can be relayed without asking the router.
type Binding struct {
	Call     string `json:"call"`
	PeerUser string `json:"peer_user"`
	PeerConn string `json:"peer_conn"`
}

// Delivery is a frame for a user's connections. Gateways publish signals
// and controls on the user's subject, delivered by whichever gateways hold
// that user's connections. Routers post their effects to the subject of
// each gateway holding a target connection (DeliverSubject), naming User
// and the Conns, and retry until the gateway answers with a Receipt. On
// the wire (EncodeDelivery) it is a JSON header with the routing fields, a
// newline, and then the client frame exactly as the receiving gateway sends
// it on, so data stays byte for byte what the sender wrote.
type Delivery struct {
	// ID is unique per publish (EncodeDelivery sets it). A session that
	// resumes on another gateway receives what both gateways held, and the
	// ID drops what both received.
	ID string `json:"n,omitempty"`
	// User and Conns address a router's delivery: these connections of
	// User held by the receiving gateway.
	User  string   `json:"user,omitempty"`
	Conns []string `json:"conns,omitempty"`
	// Conn, when set, limits delivery to that connection of the user.
	Conn string `json:"conn,omitempty"`
	// Except, when set, skips that connection of the user.
	Except string `json:"except,omitempty"`
	// Bind, when set, binds the receiving connection to its peer. Gateways
	// apply it only from a router's delivery (DeliverSubject).
	Bind *Binding `json:"bind,omitempty"`
	// Control, when set, is for the receiving gateway, not its client.
	Control *Control `json:"ctl,omitempty"`
	// Seq numbers a call's signals from one sending socket (Src), from 1,
	// so the receiving gateway notices one that went missing.
	Seq uint64   `json:"seq,omitempty"`
	Src string   `json:"src,omitempty"`
	Env Envelope `json:"-"`
}

// Receipt answers a router's delivery: the gateway has queued or held the
// frame for every connection in Conns but those in Missing, which it does
// not hold (any more). The router then looks them up in presence again.
type Receipt struct {
	Missing []string `json:"missing,omitempty"`
}

// Control operations between the gateways of a call's two connections,
// which repair signal lost in a failure: each gateway keeps the signals its
// connection sent in a call, and sends them again when asked.
const (
	// CtlReplay asks for the signals of Call sent to User/Conn, again.
	CtlReplay = "replay"
	// CtlReplayed follows the last signal a CtlReplay sent.
	CtlReplayed = "replayed"
	// CtlResync asks the receiver to send CtlReplay for Call to
	// User/Conn: sent by a gateway that may have lost what it published.
	CtlResync = "resync"
	// CtlTail says that the last signal User/Conn sent in Call was Seq
	// (from socket Src): sent for a while after each signal, so that the
	// loss of the last ones is noticed too.
	CtlTail = "tail"
)

// Control is a message from one gateway to the gateway that holds the
// delivery's connection, about one call.
type Control struct {
	Op   string `json:"op"`
	Call string `json:"call"`
	User string `json:"user,omitempty"`
	Conn string `json:"conn,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
	Src  string `json:"src,omitempty"`
}

// EncodeDelivery frames d for publishing on a user subject, with a fresh ID
// unless d has one.
func EncodeDelivery(d *Delivery) []byte {
	if d.ID == "" {
		d.ID = NextDeliveryID()
	}
	b := make([]byte, 0, headerSize(d)+1+envelopeSize(&d.Env))
	b = append(appendHeader(b, d), '\n')
	return appendEnvelope(b, &d.Env)
}

// headerSize is about how long d's header is (see envelopeSize).
func headerSize(d *Delivery) int {
	n := len(`{"n":"","user":"","conns":[],"conn":"","except":"","seq":18446744073709551615,"src":""}`) +
		len(d.ID) + len(d.User) + len(d.Conn) + len(d.Except) + len(d.Src)
	for _, c := range d.Conns {
		n += len(c) + 3
	}
	if d.Bind != nil {
		n += 64 + len(d.Bind.Call) + len(d.Bind.PeerUser) + len(d.Bind.PeerConn)
	}
	if c := d.Control; c != nil {
		n += 96 + len(c.Op) + len(c.Call) + len(c.User) + len(c.Conn) + len(c.Src)
	}
	return n
}

// DecodeDelivery parses what EncodeDelivery framed, returning the client
// frame to send on as is. The envelope's Data shares b's memory.
func DecodeDelivery(b []byte) (*Delivery, []byte, error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, errors.New("messages: delivery has no frame")
	}
	var d Delivery
	if !scanHeader(b[:i], &d) { // the usual header, without encoding/json (scan.go)
		d = Delivery{}
		if err := json.Unmarshal(b[:i], &d); err != nil {
			return nil, nil, fmt.Errorf("messages: delivery header: %w", err)
		}
	}
	frame := b[i+1:]
	if !scanEnvelope(frame, &d.Env) {
		d.Env = Envelope{}
		if err := json.Unmarshal(frame, &d.Env); err != nil {
			return nil, nil, fmt.Errorf("messages: delivery frame: %w", err)
		}
	}
	return &d, frame, nil
}
