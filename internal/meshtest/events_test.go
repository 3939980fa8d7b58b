package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/messages"
)

// eventFeed reads the events stream from its start.
type eventFeed struct {
	t    *testing.T
	msgs jetstream.MessagesContext
}

func (m *Mesh) eventFeed(t *testing.T) *eventFeed {
	t.Helper()
	js, err := jetstream.New(m.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, m.names.EventsStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Messages()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(msgs.Stop)
	return &eventFeed{t: t, msgs: msgs}
}

// next returns the next event.
func (f *eventFeed) next() events.Event {
	f.t.Helper()
	got := make(chan jetstream.Msg, 1)
	go func() {
		if msg, err := f.msgs.Next(); err == nil {
			got <- msg
		}
	}()
	select {
	case msg := <-got:
		var ev events.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			f.t.Fatalf("undecodable event %s: %v", msg.Data(), err)
		}
		return ev
	case <-time.After(Wait):
		f.t.Fatalf("no event within %v", Wait)
	}
	return events.Event{}
}

// expect reads the next event and checks its type, call or room, and reason.
func (f *eventFeed) expect(typ, call, room, reason string) events.Event {
	f.t.Helper()
	ev := f.next()
	if ev.Type != typ || ev.Call != call || ev.Room != room || ev.Reason != reason {
		f.t.Fatalf("event %+v; want %s call %q room %q reason %q", ev, typ, call, room, reason)
	}
	return ev
}

// Every call and room change is one event on the stream, once, in order
// per call, with the parties, reasons and durations (docs/events.md); two
// routers serve the mesh, so repeats would show.
func TestEvents(t *testing.T) {
	m := Start(t, Options{RingTimeout: time.Second})
	feed := m.eventFeed(t)
	alice, bob := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere)

	call := Establish(alice, bob)
	time.Sleep(20 * time.Millisecond) // so the call has lasted
	alice.Do(messages.TypeHangup, call)
	bob.ExpectEnded(call, messages.ReasonHangup)
	ringing := feed.expect(events.CallRinging, call, "", "")
	if ringing.Caller != "alice" || ringing.Callee != "bob" || ringing.Started == nil {
		t.Fatalf("ringing %+v", ringing)
	}
	answered := feed.expect(events.CallAnswered, call, "", "")
	ended := feed.expect(events.CallEnded, call, "", messages.ReasonHangup)
	if answered.Answered == nil || ended.RingMS == nil || ended.TalkMS == nil || *ended.TalkMS < 20 || *ended.RingMS < 0 {
		t.Fatalf("answered %+v, ended %+v: want the answer time, ring and talk durations", answered, ended)
	}

	// Missed calls: offline, unanswered.
	offline := alice.Invite("nobody")
	alice.ExpectEnded(offline, messages.ReasonOffline)
	feed.expect(events.CallEnded, offline, "", messages.ReasonOffline)
	missed := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
	alice.ExpectEnded(missed, messages.ReasonNoAnswer)
	bob.ExpectEnded(missed, messages.ReasonNoAnswer)
	feed.expect(events.CallRinging, missed, "", "")
	if ev := feed.expect(events.CallEnded, missed, "", messages.ReasonNoAnswer); ev.TalkMS != nil || ev.Answered != nil {
		t.Fatalf("unanswered call %+v has a talk time", ev)
	}

	// A room: made, joined twice, left, and a drop.
	alice.Join("r")
	feed.expect(events.RoomCreated, "", "r", "")
	if ev := feed.expect(events.RoomJoined, "", "r", ""); ev.User != "alice" || ev.Conn != alice.Conn {
		t.Fatalf("joined %+v", ev)
	}
	bob.Join("r")
	alice.ExpectMemberJoined("r", bob)
	feed.expect(events.RoomJoined, "", "r", "")
	bob.RoomDo(messages.TypeLeave, "r", "")
	alice.ExpectMemberLeft("r", bob, messages.LeftLeft)
	if ev := feed.expect(events.RoomLeft, "", "r", messages.LeftLeft); ev.User != "bob" {
		t.Fatalf("left %+v", ev)
	}
	bob.RoomDo(messages.TypeLeave, "r", "") // a repeat: no event
	alice.Drop()
	feed.expect(events.RoomLeft, "", "r", messages.LeftDisconnected)

	// Nothing else: a marker published now is the next thing on the stream.
	js, _ := jetstream.New(m.nc)
	marker := fmt.Sprintf(`{"id":"marker","type":"test.marker","time":%q}`, time.Now().Format(time.RFC3339Nano))
	if _, err := js.Publish(context.Background(), m.names.EventSubject("marker", ""), []byte(marker)); err != nil {
		t.Fatal(err)
	}
	if ev := feed.next(); ev.Type != "test.marker" {
		t.Fatalf("extra event %+v", ev)
	}
}
