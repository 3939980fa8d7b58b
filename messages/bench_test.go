package messages

import (
	"encoding/json"
	"strings"
	"testing"
)

// benchData are signal payloads of the two usual sizes: an ICE candidate
// and an SDP offer.
var benchData = map[string]json.RawMessage{
	"candidate": json.RawMessage(`{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}`),
	"offer": json.RawMessage(`{"type":"offer","sdp":"` +
		strings.Repeat(`a=candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host generation 0\r\n`, 40) + `"}`),
}

func BenchmarkDecodeSignal(b *testing.B) {
	for name, data := range benchData {
		frame := Encode(&Envelope{Type: TypeSignal, ID: "s1", Call: "Xr3kQ9pL2vNc8TgYw1Hs0A", Data: data})
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := Decode(frame, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// relayDelivery is what a gateway publishes for a relayed signal.
func relayDelivery(data json.RawMessage) *Delivery {
	return &Delivery{ID: "d1.42", Conn: "Xr3kQ9pL2vNc8TgYw1Hs0A", Seq: 42, Src: "Yr3kQ9pL2vNc8TgYw1Hs0A",
		Env: Envelope{Type: TypeSignal, ID: "d1.42", Call: "Xr3kQ9pL2vNc8TgYw1Hs0A", From: "alice@example.com", Data: data}}
}

func BenchmarkEncodeDelivery(b *testing.B) {
	for name, data := range benchData {
		d := relayDelivery(data)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = EncodeDelivery(d)
			}
		})
	}
}

func BenchmarkDecodeDelivery(b *testing.B) {
	for name, data := range benchData {
		msg := EncodeDelivery(relayDelivery(data))
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, _, err := DecodeDelivery(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeAck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Encode(Ack("s1", "Xr3kQ9pL2vNc8TgYw1Hs0A"))
	}
}

func BenchmarkUserSubject(b *testing.B) {
	n, _ := NewNames(DefaultPrefix)
	b.ReportAllocs()
	for b.Loop() {
		_ = n.UserSubject("0f8b4c1e-3a7d-4b8e-9c2a-5d6e7f8a9b0c")
	}
}

func BenchmarkNextDeliveryID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NextDeliveryID()
	}
}
