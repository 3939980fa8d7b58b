package messages

import "encoding/json"

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
}

// Reply answers a Request. An empty Code means success: the gateway acks the
// client's request, then sends Then to the same connection in order.
type Reply struct {
	Code    string      `json:"code,omitempty"`
	Message string      `json:"message,omitempty"`
	Call    string      `json:"call,omitempty"`
	Bind    *Binding    `json:"bind,omitempty"`
	Then    []*Envelope `json:"then,omitempty"`
}

// Binding tells a gateway which connection is the other party of an accepted
// call, so signal can be relayed without asking the router.
type Binding struct {
	Call     string `json:"call"`
	PeerUser string `json:"peer_user"`
	PeerConn string `json:"peer_conn"`
}

// Delivery is published on a user's subject and delivered by whichever
// gateways hold that user's connections.
type Delivery struct {
	// Conn, when set, limits delivery to that connection of the user.
	Conn string `json:"conn,omitempty"`
	// Except, when set, skips that connection of the user.
	Except string `json:"except,omitempty"`
	// Bind, when set, binds the receiving connection to its peer.
	Bind *Binding `json:"bind,omitempty"`
	Env  Envelope `json:"env"`
}
