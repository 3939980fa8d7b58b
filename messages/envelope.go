package messages

import "encoding/json"

// Envelope is one frame of the client protocol. Every field but Type is
// optional; which fields a type uses is listed in PROTOCOL.md.
type Envelope struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Call    string `json:"call,omitempty"`
	To      string `json:"to,omitempty"`
	From    string `json:"from,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// Room is the room a room message is about (PROTOCOL.md §14).
	Room string `json:"room,omitempty"`
	// Conn is a member connection: the target of kick.
	Conn string `json:"conn,omitempty"`
	// ToConn is the member connection a room signal is for.
	ToConn string `json:"to_conn,omitempty"`
	// FromConn is the member connection a room signal comes from; set by
	// the server only.
	FromConn string `json:"from_conn,omitempty"`
	// Member is the member member_joined and member_left are about; set by
	// the server only.
	Member *RoomMember `json:"member,omitempty"`
	// Members lists a room's members in join order (joined); set by the
	// server only.
	Members []RoomMember    `json:"members,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// RoomMember is one member of a room on the wire: a user's connection.
type RoomMember struct {
	User string `json:"user"`
	Conn string `json:"conn"`
}

// Encode returns the JSON frame for e. Data is copied byte for byte (not
// compacted or re-escaped as encoding/json would), so what one party sends
// is exactly what the other receives. Data must be valid JSON: Decode
// guarantees it for client data, json.Marshal for the server's.
func Encode(e *Envelope) []byte {
	return appendEnvelope(make([]byte, 0, envelopeSize(e)), e)
}

// Ack returns an ack for the request id, naming call where known.
func Ack(id, call string) *Envelope {
	return &Envelope{Type: TypeAck, ID: id, Call: call}
}

// RoomAck returns an ack for a room request id, naming the room and the
// call (a ring) where known.
func RoomAck(id, call, room string) *Envelope {
	return &Envelope{Type: TypeAck, ID: id, Call: call, Room: room}
}

// Error returns an error envelope answering request id.
func Error(id, code, message string) *Envelope {
	return &Envelope{Type: TypeError, ID: id, Code: code, Message: message}
}

// Ended returns an ended envelope for call with reason.
func Ended(call, reason string) *Envelope {
	return &Envelope{Type: TypeEnded, Call: call, Reason: reason}
}

// Welcome is the data of the welcome message.
type Welcome struct {
	User          string      `json:"user"`
	Conn          string      `json:"conn"`
	Resume        string      `json:"resume"`
	ResumeGraceMS int64       `json:"resume_grace_ms"`
	RingTimeoutMS int64       `json:"ring_timeout_ms"`
	ICEServers    []ICEServer `json:"ice_servers"`
	// ICETransportPolicy is "all" or "relay" (RTCPeerConnection's
	// iceTransportPolicy).
	ICETransportPolicy string     `json:"ice_transport_policy"`
	Resumed            bool       `json:"resumed"`
	Calls              []CallInfo `json:"calls"`
	// Rooms lists the rooms a resumed session is in (PROTOCOL.md §14.4).
	Rooms []RoomInfo `json:"rooms"`
}

// RoomInfo is a room and its members, in join order (welcome.data.rooms).
type RoomInfo struct {
	Room    string       `json:"room"`
	Members []RoomMember `json:"members"`
}

// ICEServer is one entry of RTCPeerConnection's iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// CallInfo describes a live call of a connection in welcome.data.calls.
type CallInfo struct {
	Call  string `json:"call"`
	State string `json:"state"`
	Role  string `json:"role"`
	Peer  string `json:"peer"`
	// Room is the room a ring rings into (PROTOCOL.md §14.5).
	Room string `json:"room,omitempty"`
}

// Goaway is the data of the goaway message.
type Goaway struct {
	ReconnectMS int64 `json:"reconnect_ms"`
}

// Expiring is the data of the expiring message: the connection is closed
// with CloseTokenExpired in ExpiresInMS milliseconds unless a refresh
// installs a newer token.
type Expiring struct {
	ExpiresInMS int64 `json:"expires_in_ms"`
}

// RefreshData is the data of a refresh request.
type RefreshData struct {
	Token string `json:"token"`
}
