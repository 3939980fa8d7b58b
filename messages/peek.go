package messages

import (
	"strings"
	"unicode/utf8"
)

// PeekLen is how much of a frame PeekID reads.
const PeekLen = 512

// PeekID returns the id of a client frame without decoding the frame, to
// answer a frame refused undecoded (over a rate limit): the value of the
// first top-level member named exactly "id", if the frame is a JSON object
// whose members up to that one lie within its first PeekLen bytes, and the
// value is a JSON string without escapes of at most MaxIDLen bytes of
// UTF-8. Otherwise it returns "". For a frame that names each field once,
// in lower case (PROTOCOL.md §3), a non-empty result is the id that Decode
// would read.
func PeekID(frame []byte) string {
	if len(frame) > PeekLen {
		frame = frame[:PeekLen]
	}
	s := peeker{scanner{b: frame}}
	if !s.next('{') {
		return ""
	}
	for {
		key, ok := s.plainString()
		if !ok || !s.next(':') {
			return ""
		}
		if key == "id" {
			id, ok := s.plainString()
			if !ok || len(id) > MaxIDLen || !utf8.ValidString(id) {
				return ""
			}
			return id
		}
		if !s.skipValue() || !s.next(',') {
			return ""
		}
	}
}

// peeker scans a prefix of JSON; every method reports false when the
// prefix ends first or the JSON is not what it expects.
type peeker struct{ scanner }

// plainString consumes a string without escapes or control characters.
func (s *peeker) plainString() (string, bool) {
	if !s.next('"') {
		return "", false
	}
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			str := string(s.b[s.i:j])
			s.i = j + 1
			return str, true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// skipValue consumes one JSON value, roughly: it finds where the value
// ends and leaves checking it to Decode.
func (s *peeker) skipValue() bool {
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.skipString()
	case '{', '[':
		for depth := 0; s.i < len(s.b); {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // a number, true, false or null
		start := s.i
		for s.i < len(s.b) && !strings.ContainsRune(",}] \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
		return s.i > start
	}
}

// skipString consumes a string, escapes and all.
func (s *peeker) skipString() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			s.i = j + 1
			return true
		}
	}
	return false
}
