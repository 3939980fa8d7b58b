package natstest

import (
	"fmt"
	"strings"
	"sync"
)

// Violations is a NATS server logger (server.SetLogger) that keeps the
// permission violations the server logs ("Publish Violation",
// "Subscription Violation") and drops everything else. Safe for
// concurrent use.
type Violations struct {
	mu    sync.Mutex
	lines []string // guarded by mu
}

// Noticef drops a notice.
func (v *Violations) Noticef(string, ...any) {}

// Warnf drops a warning.
func (v *Violations) Warnf(string, ...any) {}

// Fatalf drops a fatal error (the server stops on its own).
func (v *Violations) Fatalf(string, ...any) {}

// Debugf drops a debug line.
func (v *Violations) Debugf(string, ...any) {}

// Tracef drops a trace line.
func (v *Violations) Tracef(string, ...any) {}

// Errorf keeps the line if it reports a violation.
func (v *Violations) Errorf(format string, args ...any) {
	if line := fmt.Sprintf(format, args...); strings.Contains(line, "Violation") {
		v.mu.Lock()
		v.lines = append(v.lines, line)
		v.mu.Unlock()
	}
}

// All returns the violations logged so far, in order.
func (v *Violations) All() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}
