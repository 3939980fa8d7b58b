package meshtest

import (
	"testing"
	"time"
)

func TestDbgResume(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 3 * time.Second})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)
	alice.Signal(call, 0)
	bob.ExpectSignal(call, 0)
	dropped(t, m, 0, alice)
	for n := 1; n <= 20; n++ {
		bob.Signal(call, n)
	}
	again := m.Resume(0, alice)
	for i := 0; i < 24; i++ {
		select {
		case e := <-again.frames:
			t.Logf("%s", describe(e))
		case <-time.After(300 * time.Millisecond):
			t.Log("none")
		}
	}
}
