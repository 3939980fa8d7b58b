package messages

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// encodeReference is Encode as encoding/json writes it, with data spliced
// in as it is.
func encodeReference(t *testing.T, e *Envelope) []byte {
	head := *e
	head.Data = nil
	b, err := json.Marshal(&head)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Data) == 0 {
		return b
	}
	b = append(b[:len(b)-1], `,"data":`...)
	return append(append(b, e.Data...), '}')
}

// FuzzEncode: Encode writes what encoding/json writes, for any strings
// (escapes, HTML characters, U+2028, bytes that are not UTF-8). The
// committed corpus is in testdata/fuzz/FuzzEncode.
func FuzzEncode(f *testing.F) {
	f.Add("signal", "s1", "Xr3kQ9pL2vNc8TgYw1Hs0A", "", "alice", "", "", "", []byte(`{"a":1}`))
	f.Add("error", "", "", "", "", "", "bad_request", "id \"x\" <b>&\u2028\u2029\x00\x1f\x7f\b\f\n\r\t\\", []byte(nil))
	f.Add("", "\xff\xfe", "\xed\xa0\x80", "ñandú", "\U0001F600", "r", "c", "m", []byte(" 1 "))
	f.Fuzz(func(t *testing.T, typ, id, call, to, from, reason, code, message string, data []byte) {
		e := &Envelope{Type: typ, ID: id, Call: call, To: to, From: from, Reason: reason, Code: code, Message: message, Data: data}
		if got, want := Encode(e), encodeReference(t, e); !bytes.Equal(got, want) {
			t.Fatalf("Encode(%+v)\n got %q\nwant %q", *e, got, want)
		}
	})
}

// FuzzEncodeRoom: the room fields, members included, are encoded as
// encoding/json writes them.
func FuzzEncodeRoom(f *testing.F) {
	f.Add("member_left", "team <1>", "c1", "", "", "alice", "a1", 2, "left")
	f.Add("joined", "\xff\u2028", "", "t", "f", "b\"ob", "", 0, "")
	f.Fuzz(func(t *testing.T, typ, room, conn, toConn, fromConn, user, userConn string, members int, reason string) {
		e := &Envelope{Type: typ, Room: room, Conn: conn, ToConn: toConn, FromConn: fromConn, Reason: reason}
		if user != "" {
			e.Member = &RoomMember{User: user, Conn: userConn}
		}
		for i := range members % 9 {
			e.Members = append(e.Members, RoomMember{User: user + string(rune('a'+i)), Conn: userConn})
		}
		if got, want := Encode(e), encodeReference(t, e); !bytes.Equal(got, want) {
			t.Fatalf("Encode(%+v)\n got %q\nwant %q", *e, got, want)
		}
	})
}

// FuzzEncodeDelivery: a delivery's header is what encoding/json writes,
// followed by a newline and Encode of its envelope. The committed corpus
// is in testdata/fuzz/FuzzEncodeDelivery.
func FuzzEncodeDelivery(f *testing.F) {
	f.Add("d1.2", "bob", "", "c1", "", false, false, "", "", uint64(3), "src", "signal")
	f.Add("x", "\xff<", "a,b,,\u2028", "", "e", true, true, "op\"", "\\", uint64(0), "", "accepted")
	f.Add("", "", "", "", "", false, true, "tail", "call", uint64(1<<64-1), "", "control")
	f.Fuzz(func(t *testing.T, id, user, conns, conn, except string, bind, ctl bool, a, b string, seq uint64, src, typ string) {
		d := &Delivery{ID: id, User: user, Conn: conn, Except: except, Seq: seq, Src: src, Env: Envelope{Type: typ, Call: b, From: a}}
		if conns != "" {
			d.Conns = strings.Split(conns, ",")
		}
		if bind {
			d.Bind = &Binding{Call: b, PeerUser: a, PeerConn: conn}
		}
		if ctl {
			d.Control = &Control{Op: a, Call: b, User: user, Conn: except, Seq: seq / 2, Src: src}
		}
		got := EncodeDelivery(d) // sets d.ID if empty
		head, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append(head, '\n'), encodeReference(t, &d.Env)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("EncodeDelivery(%+v)\n got %q\nwant %q", *d, got, want)
		}
	})
}
