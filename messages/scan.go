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
		if depth == scanMaxDepth {
			return false
		}
		s.i++
		if s.next('}') {
			return true
		}
		for {
			s.space()
			if !s.skipString() || !s.next(':') {
				return false
			}
			s.space()
			if !s.skip(depth + 1) {
				return false
			}
			if s.next('}') {
				return true
			}
			if !s.next(',') {
				return false
			}
		}
	case c == '[':
		if depth == scanMaxDepth {
			return false
		}
		s.i++
		if s.next(']') {
			return true
		}
		for {
			s.space()
			if !s.skip(depth + 1) {
				return false
			}
			if s.next(']') {
				return true
			}
			if !s.next(',') {
				return false
			}
		}
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
var envelopeNames = []string{"type", "id", "call", "to", "from", "reason", "code", "message", "data"}

// knownTypes interns the message types, so a scanned type costs nothing.
var knownTypes = func() map[string]string {
	m := map[string]string{}
	for _, t := range []string{
		TypeInvite, TypeAccept, TypeReject, TypeHangup, TypeSignal, TypeRefresh, TypePing, TypeBye,
		TypeWelcome, TypeAck, TypeError, TypeRinging, TypeIncoming, TypeAccepted, TypeEnded, TypePong,
		TypeGoaway, TypeExpiring,
	} {
		m[t] = t
	}
	return m
}()

// scanEnvelope reads frame into e as json.Unmarshal would, and reports
// false if frame is not an object the scanner handles (e is then to be
// decoded with encoding/json). e.Data shares frame's memory.
func scanEnvelope(frame []byte, e *Envelope) bool {
	s := scanner{b: frame}
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return s.end()
	}
	for {
		k, ok := s.key()
		if !ok {
			return false
		}
		var field *string
		switch string(k) {
		case "type":
			v, ok := s.plain()
			if !ok {
				return false
			}
			if t, known := knownTypes[string(v)]; known {
				e.Type = t
			} else {
				e.Type = string(v)
			}
		case "data":
			if e.Data, ok = s.value(); !ok {
				return false
			}
		case "id":
			field = &e.ID
		case "call":
			field = &e.Call
		case "to":
			field = &e.To
		case "from":
			field = &e.From
		case "reason":
			field = &e.Reason
		case "code":
			field = &e.Code
		case "message":
			field = &e.Message
		default:
			if foldsToAny(k, envelopeNames) {
				return false
			}
			if _, ok := s.value(); !ok {
				return false
			}
		}
		if field != nil {
			v, ok := s.plain()
			if !ok {
				return false
			}
			*field = string(v)
		}
		if s.next('}') {
			return s.end()
		}
		if !s.next(',') {
			return false
		}
	}
}

// deliveryNames are the member names of a delivery's header.
var deliveryNames = []string{"n", "user", "conns", "conn", "except", "bind", "ctl", "seq", "src"}

// scanHeader reads a delivery's header into d as json.Unmarshal would, and
// reports false if it is not one the scanner handles: a binding or a
// control goes to encoding/json.
func scanHeader(b []byte, d *Delivery) bool {
	s := scanner{b: b}
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return s.end()
	}
	for {
		k, ok := s.key()
		if !ok {
			return false
		}
		var field *string
		switch string(k) {
		case "n":
			field = &d.ID
		case "user":
			field = &d.User
		case "conn":
			field = &d.Conn
		case "except":
			field = &d.Except
		case "src":
			field = &d.Src
		case "seq":
			if d.Seq, ok = s.uint(); !ok {
				return false
			}
		case "conns":
			if d.Conns, ok = s.plainArray(); !ok {
				return false
			}
		default:
			if foldsToAny(k, deliveryNames) { // bind, ctl, or a name in another case
				return false
			}
			if _, ok := s.value(); !ok {
				return false
			}
		}
		if field != nil {
			v, ok := s.plain()
			if !ok {
				return false
			}
			*field = string(v)
		}
		if s.next('}') {
			return s.end()
		}
		if !s.next(',') {
			return false
		}
	}
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
