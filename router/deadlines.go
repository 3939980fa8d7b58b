package router

import (
	"sync"
	"time"
)

// deadlines calls fire(id) at each id's deadline, with one timer per id.
// The ring timers and the room timers keep one each, armed from the
// router's watch of the calls bucket: every router arms every timer, so
// each fires even if the router that wrote the record has died, and a
// compare-and-set lets one of them act.
type deadlines struct {
	fire func(id string)

	mu     sync.Mutex
	timers map[string]deadline // made on the first set; guarded by mu
}

type deadline struct {
	at    time.Time
	timer *time.Timer
}

// set arms id's timer for at, unless it is armed for at already.
func (d *deadlines) set(id string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.timers[id]; ok {
		if cur.at.Equal(at) {
			return
		}
		cur.timer.Stop()
	}
	if d.timers == nil {
		d.timers = map[string]deadline{}
	}
	var t *time.Timer
	t = time.AfterFunc(time.Until(at), func() {
		d.mu.Lock()
		if d.timers[id].timer == t {
			delete(d.timers, id)
		}
		d.mu.Unlock()
		d.fire(id)
	})
	d.timers[id] = deadline{at: at, timer: t}
}

// drop stops id's timer, if it is armed.
func (d *deadlines) drop(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.timers[id]; ok {
		cur.timer.Stop()
		delete(d.timers, id)
	}
}

// keepOnly stops every timer whose id keep does not report.
func (d *deadlines) keepOnly(keep func(id string) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, cur := range d.timers {
		if !keep(id) {
			cur.timer.Stop()
			delete(d.timers, id)
		}
	}
}

// stopAll stops every timer.
func (d *deadlines) stopAll() { d.keepOnly(func(string) bool { return false }) }
