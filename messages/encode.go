package messages

import (
	"strconv"
	"unicode/utf8"
)

// The envelope and the delivery header are written by hand rather than by
// encoding/json: they are strings and numbers in a fixed order, and every
// signal is one of each. The output is byte for byte what json.Marshal
// writes (FuzzEncode, FuzzEncodeDelivery).

// appendEnvelope appends the frame of e (see Encode).
func appendEnvelope(b []byte, e *Envelope) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, e.Type)
	b = appendMember(b, `,"id":`, e.ID)
	b = appendMember(b, `,"call":`, e.Call)
	b = appendMember(b, `,"to":`, e.To)
	b = appendMember(b, `,"from":`, e.From)
	b = appendMember(b, `,"reason":`, e.Reason)
	b = appendMember(b, `,"code":`, e.Code)
	b = appendMember(b, `,"message":`, e.Message)
	b = appendMember(b, `,"room":`, e.Room)
	b = appendMember(b, `,"conn":`, e.Conn)
	b = appendMember(b, `,"to_conn":`, e.ToConn)
	b = appendMember(b, `,"from_conn":`, e.FromConn)
	if e.Member != nil {
		b = appendRoomMember(append(b, `,"member":`...), e.Member)
	}
	if len(e.Members) > 0 {
		b = append(b, `,"members":[`...)
		for i := range e.Members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendRoomMember(b, &e.Members[i])
		}
		b = append(b, ']')
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, e.Data...)
	}
	return append(b, '}')
}

// appendRoomMember appends m as a JSON object.
func appendRoomMember(b []byte, m *RoomMember) []byte {
	b = appendString(append(b, `{"user":`...), m.User)
	b = appendString(append(b, `,"conn":`...), m.Conn)
	return append(b, '}')
}

// envelopeSize is about how long e's frame is, for the buffer it is
// written into: exact unless a string needs escapes.
func envelopeSize(e *Envelope) int {
	n := len(`{"type":"","id":"","call":"","to":"","from":"","reason":"","code":"","message":"","data":}`) +
		len(e.Type) + len(e.ID) + len(e.Call) + len(e.To) + len(e.From) + len(e.Reason) + len(e.Code) +
		len(e.Message) + len(e.Data)
	if e.Room != "" || e.Conn != "" || e.ToConn != "" || e.FromConn != "" {
		n += len(`,"room":"","conn":"","to_conn":"","from_conn":""`) + len(e.Room) + len(e.Conn) + len(e.ToConn) + len(e.FromConn)
	}
	if e.Member != nil {
		n += len(`,"member":{"user":"","conn":""}`) + len(e.Member.User) + len(e.Member.Conn)
	}
	for _, m := range e.Members {
		n += len(`,"members":[{"user":"","conn":""}]`) + len(m.User) + len(m.Conn)
	}
	return n
}

// appendHeader appends the JSON of d's routing fields, as json.Marshal
// writes d.
func appendHeader(b []byte, d *Delivery) []byte {
	b = append(b, '{')
	first := len(b)
	b = appendMember(b, `,"n":`, d.ID)
	b = appendMember(b, `,"user":`, d.User)
	if len(d.Conns) > 0 {
		b = append(b, `,"conns":[`...)
		for i, c := range d.Conns {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c)
		}
		b = append(b, ']')
	}
	b = appendMember(b, `,"conn":`, d.Conn)
	b = appendMember(b, `,"except":`, d.Except)
	if d.Bind != nil {
		b = append(b, `,"bind":{"call":`...)
		b = appendString(b, d.Bind.Call)
		b = append(b, `,"peer_user":`...)
		b = appendString(b, d.Bind.PeerUser)
		b = append(b, `,"peer_conn":`...)
		b = appendString(b, d.Bind.PeerConn)
		b = append(b, '}')
	}
	if c := d.Control; c != nil {
		b = append(b, `,"ctl":{"op":`...)
		b = appendString(b, c.Op)
		b = append(b, `,"call":`...)
		b = appendString(b, c.Call)
		b = appendMember(b, `,"user":`, c.User)
		b = appendMember(b, `,"conn":`, c.Conn)
		b = appendUintMember(b, `,"seq":`, c.Seq)
		b = appendMember(b, `,"src":`, c.Src)
		b = append(b, '}')
	}
	b = appendUintMember(b, `,"seq":`, d.Seq)
	b = appendMember(b, `,"src":`, d.Src)
	if len(b) > first {
		copy(b[first:], b[first+1:]) // the first member's comma
		b = b[:len(b)-1]
	}
	return append(b, '}')
}

// appendMember appends name (with its comma and colon) and the string v,
// unless v is empty (omitempty).
func appendMember(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(append(b, name...), v)
}

func appendUintMember(b []byte, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, name...), v, 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as json.Marshal
// escapes it: ", \ and control characters, <, > and & (for HTML), U+2028
// and U+2029 (for JavaScript), and bytes that are not UTF-8 as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
