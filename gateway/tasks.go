package gateway

import (
	"sync"
	"time"
)

// tasks starts the gateway's goroutines, so that Shutdown can wait for
// them: the dispatcher and its peers, each connection's reader, writer and
// pings, and the work that timers and NATS callbacks hand off. Once wait
// has begun, go starts nothing more. Safe for concurrent use.
type tasks struct {
	mu      sync.Mutex
	stopped bool // guarded by mu
	wg      sync.WaitGroup
}

// run starts f on a goroutine and reports true, or reports false (and
// starts nothing) once wait has begun.
func (t *tasks) run(f func()) bool {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return false
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// after runs f through run once d has passed, unless the timer it returns
// is stopped first.
func (t *tasks) after(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() { t.run(f) })
}

// wait stops new goroutines from starting and waits until those started
// have returned.
func (t *tasks) wait() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.wg.Wait()
}
