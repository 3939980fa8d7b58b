package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// frame builds a JSON frame from fields with json.Marshal, so that test
// inputs with odd strings are still well-formed JSON.
func frame(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("marshal test frame: %v", err)
	}
	return b
}

const validCall = "Xr3kQ9pL2vNc8TgYw1Hs0A" // shape of NewID()

func TestDecodeAccepts(t *testing.T) {
	call64 := strings.Repeat("aZ9_-", 12) + "abcd" // 64 chars
	id64 := strings.Repeat("i", MaxIDLen)
	to256 := strings.Repeat("ñ", 128) // 256 bytes, 128 runes
	data32k := `"` + strings.Repeat("x", DefaultMaxData-2) + `"`

	tests := []struct {
		name  string
		frame []byte
		max   int
		want  Envelope
	}{
		{"invite", []byte(`{"type":"invite","id":"1","to":"bob"}`), 0,
			Envelope{Type: TypeInvite, ID: "1", To: "bob"}},
		{"invite with data", []byte(`{"type":"invite","id":"1","to":"bob","data":{"video":true}}`), 0,
			Envelope{Type: TypeInvite, ID: "1", To: "bob", Data: json.RawMessage(`{"video":true}`)}},
		{"invite data null is no data", []byte(`{"type":"invite","id":"1","to":"bob","data":null}`), 0,
			Envelope{Type: TypeInvite, ID: "1", To: "bob"}},
		{"invite email", []byte(`{"type":"invite","id":"1","to":"alice@example.com"}`), 0,
			Envelope{Type: TypeInvite, ID: "1", To: "alice@example.com"}},
		{"invite dots and wildcards", []byte(`{"type":"invite","id":"1","to":"a.b.*.>"}`), 0,
			Envelope{Type: TypeInvite, ID: "1", To: "a.b.*.>"}},
		{"invite unicode escaped", []byte(`{"type":"invite","id":"1","to":"\u00f1and\u00fa"}`), 0,
			Envelope{Type: TypeInvite, ID: "1", To: "ñandú"}},
		{"invite to 256 bytes", frame(t, map[string]any{"type": "invite", "id": "1", "to": to256}), 0,
			Envelope{Type: TypeInvite, ID: "1", To: to256}},
		{"invite without id", []byte(`{"type":"invite","to":"bob"}`), 0,
			Envelope{Type: TypeInvite, To: "bob"}},
		{"accept", []byte(`{"type":"accept","id":"2","call":"` + validCall + `"}`), 0,
			Envelope{Type: TypeAccept, ID: "2", Call: validCall}},
		{"accept 64-char call", []byte(`{"type":"accept","id":"2","call":"` + call64 + `"}`), 0,
			Envelope{Type: TypeAccept, ID: "2", Call: call64}},
		{"reject", []byte(`{"type":"reject","id":"3","call":"` + validCall + `"}`), 0,
			Envelope{Type: TypeReject, ID: "3", Call: validCall}},
		{"hangup", []byte(`{"type":"hangup","id":"4","call":"` + validCall + `"}`), 0,
			Envelope{Type: TypeHangup, ID: "4", Call: validCall}},
		{"hangup 1-char call", []byte(`{"type":"hangup","id":"4","call":"-"}`), 0,
			Envelope{Type: TypeHangup, ID: "4", Call: "-"}},
		{"signal without id", []byte(`{"type":"signal","call":"` + validCall + `","data":{"type":"offer","sdp":"v=0\r\n"}}`), 0,
			Envelope{Type: TypeSignal, Call: validCall, Data: json.RawMessage(`{"type":"offer","sdp":"v=0\r\n"}`)}},
		{"signal with id", []byte(`{"type":"signal","id":"5","call":"` + validCall + `","data":{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host"}}`), 0,
			Envelope{Type: TypeSignal, ID: "5", Call: validCall, Data: json.RawMessage(`{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host"}`)}},
		{"signal scalar data", []byte(`{"type":"signal","call":"` + validCall + `","data":0}`), 0,
			Envelope{Type: TypeSignal, Call: validCall, Data: json.RawMessage(`0`)}},
		{"refresh", []byte(`{"type":"refresh","id":"6","data":{"token":"eyJ.x.y"}}`), 0,
			Envelope{Type: TypeRefresh, ID: "6", Data: json.RawMessage(`{"token":"eyJ.x.y"}`)}},
		{"ping", []byte(`{"type":"ping","id":"7"}`), 0,
			Envelope{Type: TypePing, ID: "7"}},
		{"bye", []byte(`{"type":"bye"}`), 0,
			Envelope{Type: TypeBye}},
		{"id of 64 bytes", []byte(`{"type":"ping","id":"` + id64 + `"}`), 0,
			Envelope{Type: TypePing, ID: id64}},
		{"data exactly at default limit", []byte(`{"type":"signal","call":"c","data":` + data32k + `}`), 0,
			Envelope{Type: TypeSignal, Call: "c", Data: json.RawMessage(data32k)}},
		{"data exactly at custom limit", []byte(`{"type":"signal","call":"c","data":"12345678"}`), 10,
			Envelope{Type: TypeSignal, Call: "c", Data: json.RawMessage(`"12345678"`)}},
		{"unknown fields ignored", []byte(`{"v":2,"type":"ping","id":"8","extra":{"a":[1,2,{"b":null}]},"venue":"r"}`), 0,
			Envelope{Type: TypePing, ID: "8"}},
		{"server-only fields cleared", []byte(`{"type":"invite","id":"9","to":"bob","from":"mallory","reason":"busy","code":"internal","message":"hi"}`), 0,
			Envelope{Type: TypeInvite, ID: "9", To: "bob"}},
		{"server-only fields cleared on signal", []byte(`{"type":"signal","call":"c","from":"bob","data":{}}`), 0,
			Envelope{Type: TypeSignal, Call: "c", Data: json.RawMessage(`{}`)}},
		{"whitespace around object", []byte(" \n\t{\"type\":\"bye\"}\r\n "), 0,
			Envelope{Type: TypeBye}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.frame, tt.max)
			if err != nil {
				t.Fatalf("Decode(%.200s) = %v, want accepted", tt.frame, err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Decode(%.200s)\n got %+v\nwant %+v", tt.frame, *got, tt.want)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	to257 := strings.Repeat("ñ", 128) + "a"

	type tc struct {
		name   string
		frame  []byte
		max    int
		code   string
		wantID string // DecodeError.ID
	}
	tests := []tc{
		// invite
		{"invite without to", []byte(`{"type":"invite","id":"i1"}`), 0, CodeBadRequest, "i1"},
		{"invite to empty", []byte(`{"type":"invite","id":"i2","to":""}`), 0, CodeBadRequest, "i2"},
		{"invite to 257 bytes", frame(t, map[string]any{"type": "invite", "id": "i3", "to": to257}), 0, CodeBadRequest, "i3"},
		{"invite to 257 ascii", frame(t, map[string]any{"type": "invite", "id": "i4", "to": long(257)}), 0, CodeBadRequest, "i4"},
		{"invite to not a string", []byte(`{"type":"invite","id":"i5","to":["bob"]}`), 0, CodeBadRequest, ""},
		{"invite to lone high surrogate", []byte(`{"type":"invite","id":"i6","to":"\ud800x"}`), 0, CodeBadRequest, "i6"},
		{"invite to lone low surrogate", []byte(`{"type":"invite","id":"i7","to":"\udc00x"}`), 0, CodeBadRequest, "i7"},
		{"invite to U+FFFD", []byte(`{"type":"invite","id":"i8","to":"\ufffdx"}`), 0, CodeBadRequest, "i8"},
		// missing or malformed type
		{"missing type", []byte(`{"id":"t1","to":"bob"}`), 0, CodeBadRequest, "t1"},
		{"empty type", []byte(`{"type":"","id":"t2"}`), 0, CodeBadRequest, "t2"},
		{"type not a string", []byte(`{"type":1,"id":"t3"}`), 0, CodeBadRequest, ""},
		{"type null", []byte(`{"type":null,"id":"t4"}`), 0, CodeBadRequest, "t4"},
		// unknown types
		{"unknown type", []byte(`{"type":"subscribe","id":"u1"}`), 0, CodeUnknownType, "u1"},
		{"server type from client", []byte(`{"type":"accepted","id":"u2","call":"c"}`), 0, CodeUnknownType, "u2"},
		{"server type welcome", []byte(`{"type":"welcome","id":"u3"}`), 0, CodeUnknownType, "u3"},
		{"type is case-sensitive", []byte(`{"type":"INVITE","id":"u4","to":"bob"}`), 0, CodeUnknownType, "u4"},
		{"type with space", []byte(`{"type":"ping ","id":"u5"}`), 0, CodeUnknownType, "u5"},
		// signal
		{"signal without data", []byte(`{"type":"signal","id":"s1","call":"c"}`), 0, CodeBadRequest, "s1"},
		{"signal data null", []byte(`{"type":"signal","id":"s2","call":"c","data":null}`), 0, CodeBadRequest, "s2"},
		// refresh
		{"refresh without data", []byte(`{"type":"refresh","id":"r1"}`), 0, CodeBadRequest, "r1"},
		{"refresh without token", []byte(`{"type":"refresh","id":"r2","data":{}}`), 0, CodeBadRequest, "r2"},
		{"refresh empty token", []byte(`{"type":"refresh","id":"r3","data":{"token":""}}`), 0, CodeBadRequest, "r3"},
		{"refresh token not a string", []byte(`{"type":"refresh","id":"r4","data":{"token":5}}`), 0, CodeBadRequest, "r4"},
		{"refresh data a string", []byte(`{"type":"refresh","id":"r5","data":"eyJ.x.y"}`), 0, CodeBadRequest, "r5"},
		{"refresh data null", []byte(`{"type":"refresh","id":"r6","data":null}`), 0, CodeBadRequest, "r6"},
		// non-object or broken frames: no id can be read
		{"array", []byte(`[]`), 0, CodeBadRequest, ""},
		{"string", []byte(`"x"`), 0, CodeBadRequest, ""},
		{"truncated literal", []byte(`nul`), 0, CodeBadRequest, ""},
		{"null", []byte(`null`), 0, CodeBadRequest, ""},
		{"number", []byte(`42`), 0, CodeBadRequest, ""},
		{"true", []byte(`true`), 0, CodeBadRequest, ""},
		{"empty frame", []byte(``), 0, CodeBadRequest, ""},
		{"whitespace only", []byte(" \n"), 0, CodeBadRequest, ""},
		{"truncated object", []byte(`{"type":"ping","id":"x"`), 0, CodeBadRequest, ""},
		{"trailing garbage", []byte(`{"type":"ping","id":"x"} {}`), 0, CodeBadRequest, ""},
		{"two objects", []byte(`{"type":"ping"}{"type":"bye"}`), 0, CodeBadRequest, ""},
		{"single quotes", []byte(`{'type':'ping'}`), 0, CodeBadRequest, ""},
		{"broken data", []byte(`{"type":"signal","id":"x","call":"c","data":{"a":}}`), 0, CodeBadRequest, ""},
		// size limits
		{"data over default limit", []byte(`{"type":"signal","id":"l1","call":"c","data":"` + long(DefaultMaxData-1) + `"}`), 0, CodeTooLarge, "l1"},
		{"data over custom limit", []byte(`{"type":"signal","id":"l2","call":"c","data":"123456789"}`), 10, CodeTooLarge, "l2"},
		{"invite data over limit", []byte(`{"type":"invite","id":"l3","to":"bob","data":[` + strings.Repeat("1,", 8) + `1]}`), 16, CodeTooLarge, "l3"},
		{"negative limit means default", []byte(`{"type":"signal","id":"l4","call":"c","data":"` + long(DefaultMaxData) + `"}`), -1, CodeTooLarge, "l4"},
		{"id over 64 bytes", []byte(`{"type":"ping","id":"` + long(MaxIDLen+1) + `"}`), 0, CodeBadRequest, ""},
		{"id over 64 bytes multibyte", frame(t, map[string]any{"type": "ping", "id": strings.Repeat("é", 33)}), 0, CodeBadRequest, ""},
		{"id not a string", []byte(`{"type":"ping","id":7}`), 0, CodeBadRequest, ""},
	}
	// Every call-carrying type refuses a missing or malformed call id.
	badCalls := []struct {
		name string
		call any // absent when nil
	}{
		{"without call", nil},
		{"call empty", ""},
		{"call with dot", "a.b"},
		{"call is star", "*"},
		{"call with star", "ab*"},
		{"call is gt", ">"},
		{"call with gt", "a>"},
		{"call with space", "a b"},
		{"call with tab", "a\tb"},
		{"call with slash", "a/b"},
		{"call with equals", "YQ=="},
		{"call non-ascii", "ñ"},
		{"call 65 chars", long(MaxCallIDLen + 1)},
		{"call not a string", 12},
	}
	for _, typ := range []string{TypeAccept, TypeReject, TypeHangup, TypeSignal} {
		for _, bc := range badCalls {
			f := map[string]any{"type": typ, "id": "c-" + typ, "data": map[string]any{"sdp": "x"}}
			wantID := "c-" + typ
			if bc.call != nil {
				f["call"] = bc.call
				if _, isString := bc.call.(string); !isString {
					wantID = "" // the frame does not unmarshal
				}
			}
			tests = append(tests, tc{typ + " " + bc.name, frame(t, f), 0, CodeBadRequest, wantID})
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.frame, tt.max)
			if err == nil {
				t.Fatalf("Decode(%.200q) = %+v, want refused with %s", tt.frame, *got, tt.code)
			}
			if got != nil {
				t.Errorf("Decode returned an envelope with an error: %+v", *got)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
			}
			if de.Code != tt.code {
				t.Errorf("code = %q, want %q (message %q)", de.Code, tt.code, de.Message)
			}
			if de.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", de.ID, tt.wantID)
			}
			if de.Message == "" {
				t.Error("empty message")
			}
			if !strings.Contains(err.Error(), tt.code) {
				t.Errorf("Error() = %q does not name the code", err.Error())
			}
		})
	}
}

// The error message quotes at most 64 characters of an unknown type, so a
// client cannot make the server echo a 32 KiB string back at it.
func TestDecodeUnknownTypeMessageBounded(t *testing.T) {
	typ := strings.Repeat("z", 10000)
	_, err := Decode(frame(t, map[string]any{"type": typ}), 0)
	var de *DecodeError
	if !errors.As(err, &de) || de.Code != CodeUnknownType {
		t.Fatalf("err = %v, want unknown_type", err)
	}
	if len(de.Message) > 200 {
		t.Errorf("message is %d bytes long", len(de.Message))
	}
}

// Frames must be UTF-8 (RFC 6455 text frames) and user ids are UTF-8 by
// contract. encoding/json silently turns invalid bytes inside strings into
// U+FFFD, so today an invalid `to` becomes a different, valid user id, and
// invalid bytes inside data are relayed raw, which makes a browser peer fail
// its WebSocket (invalid UTF-8 in a text frame).
func TestDecodeInvalidUTF8(t *testing.T) {
	tests := []struct {
		name  string
		frame string
	}{
		{"to", "{\"type\":\"invite\",\"id\":\"1\",\"to\":\"bob\xff\"}"},
		{"to only invalid", "{\"type\":\"invite\",\"id\":\"1\",\"to\":\"\xc3\x28\"}"},
		{"id", "{\"type\":\"ping\",\"id\":\"\xfe\"}"},
		{"data", "{\"type\":\"signal\",\"id\":\"1\",\"call\":\"c\",\"data\":{\"sdp\":\"v=0\xff\"}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.frame), 0)
			if err == nil {
				// What holds today: nothing invalid reaches a user id.
				if !utf8.ValidString(e.To) || !utf8.ValidString(e.ID) {
					t.Fatalf("invalid UTF-8 accepted into to/id: %+v", *e)
				}
				if out := Encode(e); !utf8.Valid(out) {
					t.Fatalf("Decode accepts invalid UTF-8 inside data and Encode relays it raw: %q", out)
				}
				t.Fatalf("Decode accepts invalid UTF-8 in %s (rewritten to U+FFFD): %+v", tt.name, *e)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Code != CodeBadRequest {
				t.Fatalf("err = %v, want bad_request", err)
			}
		})
	}
}

// Escaped lone surrogates are valid JSON; they decode to U+FFFD, so an
// accepted id never holds invalid UTF-8.
func TestDecodeLoneSurrogate(t *testing.T) {
	e, err := Decode([]byte(`{"type":"invite","id":"\ud800","to":"a\udc00"}`), 0)
	if err != nil {
		return // refusing is fine too
	}
	if !utf8.ValidString(e.ID) || !utf8.ValidString(e.To) {
		t.Fatalf("accepted invalid UTF-8: %q %q", e.ID, e.To)
	}
}

// Data sent the way a browser sends it (JSON.stringify output: compact, no
// HTML-special characters) reaches the peer byte for byte.
func TestEncodeRoundTripDataBytes(t *testing.T) {
	datas := []string{
		`{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"}`,
		`{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"a1b2"}`,
		`{"video":true,"name":"Ñandú \u00e9\ud83d\ude00 \"q\" \\ /","n":1.0e-7,"big":123456789012345678901234567890}`,
		`["a",1,null,false,{}]`,
		`"plain string"`,
		`0`,
		`{"nested":{"deep":[[[[{"x":"y"}]]]]}}`,
	}
	for _, d := range datas {
		in := []byte(`{"type":"signal","id":"1","call":"` + validCall + `","data":` + d + `}`)
		e, err := Decode(in, 0)
		if err != nil {
			t.Fatalf("Decode(%s): %v", in, err)
		}
		if !bytes.Equal(e.Data, []byte(d)) {
			t.Fatalf("decoded data %s, want %s", e.Data, d)
		}
		// What the gateway does: the same data goes out in a server envelope.
		out := Encode(&Envelope{Type: TypeSignal, Call: e.Call, From: "alice", Data: e.Data})
		var back Envelope
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", out, err)
		}
		if !bytes.Equal(back.Data, []byte(d)) {
			t.Errorf("data changed on the wire:\n sent %s\n got  %s", d, back.Data)
		}
		if back.From != "alice" || back.Call != validCall || back.Type != TypeSignal {
			t.Errorf("envelope changed: %+v", back)
		}
	}
}

// Data that is not compact, or holds <, >, &, U+2028 or U+2029, arrives as
// the same JSON value but not the same bytes: Encode (json.Marshal) compacts
// json.RawMessage and escapes those characters. Clients must parse data, not
// compare it bytewise (PROTOCOL.md says so).
func TestEncodeRoundTripDataValue(t *testing.T) {
	datas := []string{
		"{ \"sdp\" : \"v=0\\r\\n\" ,\n  \"type\": \"answer\" }",
		`{"name":"Tom & Jerry <tj@example.com>"}`,
		"{\"s\":\"line\u2028sep\u2029\"}",
		`[ 1 , 2 ]`,
	}
	for _, d := range datas {
		in := []byte(`{"type":"signal","call":"c","data":` + d + `}`)
		e, err := Decode(in, 0)
		if err != nil {
			t.Fatalf("Decode(%s): %v", in, err)
		}
		var back Envelope
		if err := json.Unmarshal(Encode(e), &back); err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, back.Data, []byte(d)) {
			t.Errorf("data value changed:\n sent %s\n got  %s", d, back.Data)
		}
	}
}

// jsonEqual reports whether a and b hold the same JSON value (numbers
// compared by their text).
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	va, erra := jsonValue(a)
	vb, errb := jsonValue(b)
	if erra != nil || errb != nil {
		t.Fatalf("not JSON: %v / %v", erra, errb)
	}
	return reflect.DeepEqual(va, vb)
}

func jsonValue(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// A decoded client frame re-encodes with exactly the wire field names, and
// server-only fields never reappear.
func TestEncodeDecodedFrame(t *testing.T) {
	e, err := Decode([]byte(`{"data":{"a":1},"to":"bob","from":"eve","id":"1","type":"invite","x":1}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"invite","id":"1","to":"bob","data":{"a":1}}`
	if got := string(Encode(e)); got != want {
		t.Errorf("Encode = %s, want %s", got, want)
	}
}
