package messages

import (
	"unicode/utf8"
)

// The relay path's frames are read with a small scanner instead of
// encoding/json: a signal is decoded on the sending gateway, and its
// delivery on the receiving one, for a few short string fields, while data
// is only checked to be JSON and passed on as it was written. The scanner
// handles what a well-behaved sender writes — every member named once and
// exactly, strings without escapes — and reports false on anything else,
// valid JSON or not; its callers then decode with encoding/json, so that
// what is accepted, refused and with which error stays exactly what
// encoding/json decides (FuzzScanEnvelope, FuzzScanDelivery).

// scanMaxDepth bounds the nesting the scanner follows; deeper values go to
// encoding/json, which allows up to 10 000 levels.
const scanMaxDepth = 64

// scanner reads JSON from b, from i on. Every method reports false when
// the input is not what it handles.
type scanner struct {
	b []byte
	i int
}

// space skips JSON whitespace.
func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next consumes c after any whitespace.
func (s *scanner) next(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plain consumes a string without escapes and returns its content, which
// is then what encoding/json would decode: no control characters, and
// valid UTF-8 (encoding/json would replace what is not).
func (s *scanner) plain() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	ascii := true
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			str := s.b[s.i:j]
			if !ascii && !utf8.Valid(str) {
				return nil, false
			}
			s.i = j + 1
			return str, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// value consumes one JSON value, checking its syntax as encoding/json
// does (bytes that are not UTF-8 are allowed inside strings, as there),
// and returns it as written.
func (s *scanner) value() ([]byte, bool) {
	s.space()
	start := s.i
	if !s.skip(0) {
		return nil, false
	}
	return s.b[start:s.i], true
}

// skip consumes one JSON value at nesting depth.
func (s *scanner) skip(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		return s.skipContainer(depth, '}')
	case c == '[':
		return s.skipContainer(depth, ']')
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

// skipContainer consumes an object (end '}') or an array (end ']') at
// nesting depth.
func (s *scanner) skipContainer(depth int, end byte) bool {
	if depth == scanMaxDepth {
		return false
	}
	s.i++
	if s.next(end) {
		return true
	}
	for {
		s.space()
		if end == '}' && (!s.skipString() || !s.next(':')) {
			return false
		}
		s.space()
		if !s.skip(depth + 1) {
			return false
		}
		if s.next(end) {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// skipString consumes a string, checking its escapes.
func (s *scanner) skipString() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(s.b) {
				return false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[j+1 : j+5] {
					if !isHex(h) {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// number consumes -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scanner) number() bool {
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i >= len(s.b):
		return false
	case s.b[s.i] == '0':
		s.i++
	case s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more decimal digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// uint consumes a number that encoding/json decodes into a uint64 as is:
// digits only, without a leading zero, that fit.
func (s *scanner) uint() (uint64, bool) {
	s.space()
	start := s.i
	var n uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
		s.i++
	}
	switch {
	case s.i == start, s.b[start] == '0' && s.i-start > 1:
		return 0, false
	case s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E'):
		return 0, false
	}
	return n, true
}

// key consumes a member's name and the colon after it, and returns the
// name. A name the scanner does not handle (escapes, or bytes past ASCII,
// which encoding/json folds in ways ASCII folding does not) reports false.
func (s *scanner) key() ([]byte, bool) {
	k, ok := s.plain()
	if !ok || !s.next(':') {
		return nil, false
	}
	for _, c := range k {
		if c >= utf8.RuneSelf {
			return nil, false
		}
	}
	return k, true
}

// members consumes an object, calling member with each member's name and
// the scanner at its value, which member consumes.
func (s *scanner) members(member func(name []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		k, ok := s.key()
		if !ok || !member(k) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// plainInto consumes a string without escapes into *p.
func (s *scanner) plainInto(p *string) bool {
	v, ok := s.plain()
	if ok {
		*p = string(v)
	}
	return ok
}

// other consumes the value of a member whose name k is none of names: a
// name that encoding/json would match to one of them (in another case)
// reports false.
func (s *scanner) other(k []byte, names []string) bool {
	if foldsToAny(k, names) {
		return false
	}
	_, ok := s.value()
	return ok
}

// foldsToAny reports whether the ASCII name k equals one of names but for
// case, as encoding/json matches member names to fields.
func foldsToAny(k []byte, names []string) bool {
	for _, n := range names {
		if len(n) != len(k) {
			continue
		}
		same := true
		for i := range k {
			a, b := k[i], n[i]
			if a >= 'A' && a <= 'Z' {
				a += 'a' - 'A'
			}
			if a != b {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// envelopeNames are the member names of Envelope.
var envelopeNames = []string{
	"type", "id", "call", "to", "from", "reason", "code", "message", "data",
	"room", "conn", "to_conn", "from_conn", "member", "members",
}

// knownTypes are the message types (internType).
var knownTypes = func() map[string]string {
	m := map[string]string{}
	for _, t := range []string{
		TypeInvite, TypeAccept, TypeReject, TypeHangup, TypeSignal, TypeRefresh, TypePing, TypeBye,
		TypeWelcome, TypeAck, TypeError, TypeRinging, TypeIncoming, TypeAccepted, TypeEnded, TypePong,
		TypeGoaway, TypeExpiring,
		TypeJoin, TypeLeave, TypeKick, TypeLock, TypeUnlock,
		TypeJoined, TypeMemberJoined, TypeMemberLeft, TypeLocked, TypeUnlocked,
	} {
		m[t] = t
	}
	return m
}()

// internType returns the message type t, without allocating for a known
// one.
func internType(t []byte) string {
	if known, ok := knownTypes[string(t)]; ok {
		return known
	}
	return string(t)
}

// scanEnvelope reads frame into e as json.Unmarshal would, and reports
// false if frame is not an object the scanner handles (e is then to be
// decoded with encoding/json). e.Data shares frame's memory.
func scanEnvelope(frame []byte, e *Envelope) bool {
	s := scanner{b: frame}
	return s.members(func(k []byte) bool {
		switch string(k) {
		case "type":
			v, ok := s.plain()
			if ok {
				e.Type = internType(v)
			}
			return ok
		case "data":
			var ok bool
			e.Data, ok = s.value()
			return ok
		case "id":
			return s.plainInto(&e.ID)
		case "call":
			return s.plainInto(&e.Call)
		case "to":
			return s.plainInto(&e.To)
		case "from":
			return s.plainInto(&e.From)
		case "reason":
			return s.plainInto(&e.Reason)
		case "code":
			return s.plainInto(&e.Code)
		case "message":
			return s.plainInto(&e.Message)
		case "room":
			return s.plainInto(&e.Room)
		case "conn":
			return s.plainInto(&e.Conn)
		case "to_conn":
			return s.plainInto(&e.ToConn)
		case "from_conn":
			return s.plainInto(&e.FromConn)
		}
		// member and members (server only, objects) go to encoding/json.
		return s.other(k, envelopeNames)
	}) && s.end()
}

// deliveryNames are the member names of a delivery's header.
var deliveryNames = []string{"n", "user", "conns", "conn", "except", "bind", "ctl", "seq", "src"}

// scanHeader reads a delivery's header into d as json.Unmarshal would, and
// reports false if it is not one the scanner handles: a binding or a
// control goes to encoding/json.
func scanHeader(b []byte, d *Delivery) bool {
	s := scanner{b: b}
	return s.members(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "n":
			return s.plainInto(&d.ID)
		case "user":
			return s.plainInto(&d.User)
		case "conn":
			return s.plainInto(&d.Conn)
		case "except":
			return s.plainInto(&d.Except)
		case "src":
			return s.plainInto(&d.Src)
		case "seq":
			d.Seq, ok = s.uint()
			return ok
		case "conns":
			d.Conns, ok = s.plainArray()
			return ok
		}
		return s.other(k, deliveryNames) // bind and ctl are names too: encoding/json reads them
	}) && s.end()
}

// plainArray consumes an array of strings without escapes; an empty one
// is an empty slice, not nil, as encoding/json decodes it.
func (s *scanner) plainArray() ([]string, bool) {
	if !s.next('[') {
		return nil, false
	}
	list := []string{}
	if s.next(']') {
		return list, true
	}
	for {
		v, ok := s.plain()
		if !ok {
			return nil, false
		}
		list = append(list, string(v))
		if s.next(']') {
			return list, true
		}
		if !s.next(',') {
			return nil, false
		}
	}
}
