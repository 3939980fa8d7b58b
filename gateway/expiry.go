package gateway

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// A session's token expiry runs on one timer, c.expiry (guarded by c.mu), in
// two phases: first the warning, ExpiryWarning before the close, which sends
// expiring and re-arms c.expiry for the close; then the close with 4002 at
// the token's exp plus Auth.Leeway, the leeway verification allows. A timer
// that is no longer c.expiry when it fires (a refresh replaced it, or
// stopExpiry ran) does nothing, so a stale timer can neither warn nor close.
//
// The timers run their functions through the gateway's tasks, which
// Shutdown waits for. They are armed with c.mu held, and their functions
// take c.mu before reading their own *time.Timer: that orders the
// assignment before the read. Frames are queued after c.mu is released:
// queueing may take c.mu itself.
//
// The timer's function refers to c, so run stops it on every way out: an
// ended or refused socket must not stay in memory until its token expires.
// How far away that is does not matter then (a token may say year 9999):
// the timer of an open socket costs the same however long it waits.

// setExpiry (re)arms the session's expiry for a token that expires at at:
// the warning once for this token, then the close. Any earlier token's
// warning and close are cancelled. With less than ExpiryWarning left, the
// warning is queued before setExpiry returns: for a new connection it is
// written right after welcome (the queue is drained only after it), for a
// refresh right before the refresh's ack.
func (c *conn) setExpiry(at time.Time) {
	closeAt := at.Add(c.s.cfg.Auth.Leeway)
	var warning *messages.Envelope
	c.mu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	w := c.s.cfg.ExpiryWarning
	switch warnAt := closeAt.Add(-w); {
	case w == 0:
		c.expiry = c.closeTimer(closeAt)
	case time.Now().Before(warnAt):
		c.expiry = c.warnTimer(warnAt, closeAt)
	default:
		warning = c.warn(closeAt)
	}
	c.mu.Unlock()
	if warning != nil {
		c.send1(warning)
	}
}

// stopExpiry cancels the pending warning or close, for a connection that
// has ended.
func (c *conn) stopExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
}

// warnTimer sends expiring at warnAt and then arms the close at closeAt.
// Called with c.mu held.
func (c *conn) warnTimer(warnAt, closeAt time.Time) *time.Timer {
	var t *time.Timer
	t = c.s.tasks.after(time.Until(warnAt), func() {
		c.mu.Lock()
		var warning *messages.Envelope
		if c.expiry == t && c.ctx.Err() == nil {
			warning = c.warn(closeAt)
		}
		c.mu.Unlock()
		// A refresh racing with this may be acked just before the warning
		// goes out; the client then refreshes once more, which is harmless.
		if warning != nil {
			c.send1(warning)
		}
	})
	return t
}

// warn arms the close at closeAt and returns the expiring message to queue.
// Called with c.mu held.
func (c *conn) warn(closeAt time.Time) *messages.Envelope {
	c.expiry = c.closeTimer(closeAt)
	left := max(time.Until(closeAt), 0)
	data := mustJSON(messages.Expiring{ExpiresInMS: left.Milliseconds()})
	return &messages.Envelope{Type: messages.TypeExpiring, Data: data}
}

// closeTimer closes the connection with 4002 at closeAt. Called with c.mu
// held.
func (c *conn) closeTimer(closeAt time.Time) *time.Timer {
	var t *time.Timer
	t = c.s.tasks.after(time.Until(closeAt), func() {
		c.mu.Lock()
		current := c.expiry == t
		c.mu.Unlock()
		if current { // closeWith may block on the close handshake: not under c.mu
			c.closeWith(messages.CloseTokenExpired, "token expired")
		}
	})
	return t
}
