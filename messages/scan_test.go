package messages

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// scanSeeds are frames for the scanner fuzz targets: the usual ones, and
// the corners where encoding/json decides (case, escapes, duplicates,
// nulls, nesting, numbers, trailing bytes).
var scanSeeds = []string{
	`{"type":"signal","call":"Xr3kQ9pL2vNc8TgYw1Hs0A","data":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0"}}`,
	`{"type":"signal","id":"s1","call":"c","data":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}`,
	` { "type" : "ping" , "id" : "p" } `,
	`{"type":"invite","to":"ñandú","data":[1,-2.5e+3,true,false,null,{},[],""]}`,
	`{"type":"signal","call":"c","data":null}`,
	`{"type":"a","type":"b","data":1,"data":2}`,
	`{"type":"a","TYPE":"b"}`, `{"Type":"a"}`, `{"ſype":"a"}`, `{"id":null}`, `{"id":5}`,
	`{"type":"\u0041"}`, `{"x":"\ud800"}`, `{"x":"\x"}`, `{"x":01}`, `{"x":1.}`, `{"x":-}`, `{"x":1e}`,
	`{"x":tru}`, `{"x":nullx}`, `{"type":"p"}x`, `{"type":"p"}}`, `{}`, `{,}`, `{"a":1,}`, `[]`, `null`, ``,
	`{"data":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	"{\"type\":\"a\xff\"}", "{\"x\":\"a\xff\"}", "{\"type\":\"a\x01\"}",
	`{"n":"d1","user":"bob","conns":["a","b"],"conn":"c","except":"e","seq":18446744073709551615,"src":"s"}`,
	`{"seq":18446744073709551616}`, `{"seq":-1}`, `{"seq":1.0}`, `{"seq":1e2}`, `{"conns":[]}`, `{"conns":null}`,
	`{"bind":{"call":"c","peer_user":"u","peer_conn":"p"}}`, `{"ctl":{"op":"tail","call":"c","seq":3}}`,
}

// FuzzScanEnvelope: where the scanner reads a frame, encoding/json reads
// the same envelope from it, so Decode's fast path agrees with the full
// decoder wherever both apply. The committed corpus is in
// testdata/fuzz/FuzzScanEnvelope.
func FuzzScanEnvelope(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fast Envelope
		if !scanEnvelope(frame, &fast) {
			return
		}
		var full Envelope
		if err := json.Unmarshal(frame, &full); err != nil {
			t.Fatalf("scanned %q, which encoding/json refuses: %v", frame, err)
		}
		if !sameEnvelope(&fast, &full) {
			t.Fatalf("%q:\n scanned %+v\n decoded %+v", frame, fast, full)
		}
	})
}

func sameEnvelope(a, b *Envelope) bool {
	return a.Type == b.Type && a.ID == b.ID && a.Call == b.Call && a.To == b.To && a.From == b.From &&
		a.Reason == b.Reason && a.Code == b.Code && a.Message == b.Message &&
		bytes.Equal(a.Data, b.Data) && (a.Data == nil) == (b.Data == nil)
}

// The fast path reads every envelope that the Go client and the servers
// write, with data of any shape: the slow path is for the unusual frame.
func TestScanEnvelopeReadsEncode(t *testing.T) {
	for _, e := range []*Envelope{
		{Type: TypeSignal, ID: "s1", Call: "Xr3kQ9pL2vNc8TgYw1Hs0A", Data: json.RawMessage(`{"sdp":"v=0\r\n","type":"offer"}`)},
		{Type: TypeInvite, ID: "1", To: "ñandú@example.com", Data: json.RawMessage(`[1,-2.5e+3,true,false,null,{},[],"<&>"]`)},
		{Type: TypeIncoming, Call: "c", From: "alice", Data: json.RawMessage(` {"video" : true} `)},
		{Type: TypeError, ID: "x", Code: CodeNotFound, Message: "no such call"},
		{Type: TypeEnded, Call: "c", Reason: ReasonHangup},
		{Type: TypeSignal, Call: "c", Data: json.RawMessage(`{"sdp":"` + strings.Repeat("a=candidate:1 1 udp 1 192.0.2.1 1 typ host\\r\\n", 500) + `"}`)},
	} {
		frame := Encode(e)
		var got Envelope
		if !scanEnvelope(frame, &got) {
			t.Errorf("the scanner does not read %.200s", frame)
			continue
		}
		want := *e
		want.Data = bytes.TrimSpace(want.Data)
		if !sameEnvelope(&got, &want) {
			t.Errorf("scanned %.200s as %.200v", frame, got)
		}
	}
}

// FuzzScanDelivery: where the scanner reads a delivery's header, encoding/json
// reads the same routing fields from it. The committed corpus is in
// testdata/fuzz/FuzzScanDelivery.
func FuzzScanDelivery(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	for _, d := range []*Delivery{relayDelivery(nil), {User: "bob", Conns: []string{"a", "b"}, Except: "x"}} {
		msg := EncodeDelivery(d)
		f.Add(msg[:bytes.IndexByte(msg, '\n')])
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		var fast Delivery
		if !scanHeader(header, &fast) {
			return
		}
		var full Delivery
		if err := json.Unmarshal(header, &full); err != nil {
			t.Fatalf("scanned %q, which encoding/json refuses: %v", header, err)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("%q:\n scanned %+v\n decoded %+v", header, fast, full)
		}
	})
}

// DecodeDelivery reads what EncodeDelivery wrote, with the scanner where
// it can and encoding/json where it cannot (a binding, a control), and
// returns the frame as it was written.
func TestDeliveryRoundTrip(t *testing.T) {
	for _, d := range []*Delivery{
		relayDelivery(benchData["candidate"]),
		{User: "bob", Conns: []string{"a", "b"}, Env: *Ended("c", ReasonHangup)},
		{User: "bob", Conns: []string{"a"}, Bind: &Binding{Call: "c", PeerUser: "alice", PeerConn: "k"},
			Env: Envelope{Type: TypeAccepted, Call: "c", From: "bob"}},
		{Conn: "k", Control: &Control{Op: CtlTail, Call: "c", User: "alice", Conn: "j", Seq: 9, Src: "s"}, Env: Envelope{Type: "control"}},
		{User: "ñandú <&>", Env: Envelope{Type: TypeIncoming, Call: "c", From: "a\u2028b", Data: json.RawMessage(`{"x":"\u00e9"}`)}},
	} {
		msg := EncodeDelivery(d)
		got, frame, err := DecodeDelivery(msg)
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		if want := Encode(&d.Env); !bytes.Equal(frame, want) {
			t.Errorf("frame %s, want %s", frame, want)
		}
		want := *d
		want.Env = Envelope{}
		gotHead := *got
		gotHead.Env = Envelope{}
		if !reflect.DeepEqual(gotHead, want) {
			t.Errorf("header of %s:\n got %+v\nwant %+v", msg, gotHead, want)
		}
		if !sameEnvelope(&got.Env, &d.Env) {
			t.Errorf("envelope of %s: %+v", msg, got.Env)
		}
	}
}
