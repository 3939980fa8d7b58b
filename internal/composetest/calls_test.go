//go:build compose

package composetest

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// establish has caller call callee, callee answer, and returns the call.
func establish(caller, callee *client) string {
	caller.t.Helper()
	call := caller.do(&messages.Envelope{Type: messages.TypeInvite, To: callee.user}).Call
	caller.expect(messages.TypeRinging, call)
	callee.expect(messages.TypeIncoming, call)
	callee.do(&messages.Envelope{Type: messages.TypeAccept, Call: call})
	callee.expect(messages.TypeAccepted, call)
	caller.expect(messages.TypeAccepted, call)
	return call
}

// exchange checks that the call goes on: a signal each way arrives.
func exchange(a, b *client, call string, n int) {
	a.t.Helper()
	a.signal(call, n)
	b.expectSignal(call, n)
	b.signal(call, n+1)
	a.expectSignal(call, n+1)
}

// connectElsewhere connects user through the load balancer until it lands
// on another gateway than other's. The connections that landed there stay
// open meanwhile, as the load balancer counts them, then end with bye.
func connectElsewhere(s *stack, user string, other *client) *client {
	s.t.Helper()
	var there []*client
	c := connect(s, user)
	for c.upstream == other.upstream {
		there = append(there, c)
		if len(there) == gateways {
			s.t.Fatalf("the load balancer put %s on %s's gateway %s %d times", user, other.user, other.upstream, len(there))
		}
		c = connect(s, user)
	}
	for _, d := range there {
		d.bye()
	}
	return c
}

// retryTransient sends a request until it is acknowledged, while the
// answer is one that says "retry": while JetStream elects new leaders, the
// routers answer late (error unavailable) or not at all (internal). An
// invite answered so is withdrawn by the gateway in the background, and
// until it is, the caller is still busy: a retried invite may meanwhile be
// refused with invalid_state (PROTOCOL.md, error codes).
func retryTransient(c *client, env *messages.Envelope) *messages.Envelope {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	unanswered := false // an earlier try was answered unavailable or internal
	for {
		ack, refused := c.request(&messages.Envelope{Type: env.Type, To: env.To, Call: env.Call})
		if ack != nil {
			return ack
		}
		transient := refused.Code == messages.CodeUnavailable || refused.Code == messages.CodeInternal
		withdrawing := env.Type == messages.TypeInvite && refused.Code == messages.CodeInvalidState && unanswered
		if !(transient || withdrawing) || time.Now().After(deadline) {
			c.t.Fatalf("%s: %s refused: %s %s", c, env.Type, refused.Code, refused.Message)
		}
		unanswered = unanswered || transient
		c.t.Logf("%s: %s: %s (%s), retrying", c, env.Type, refused.Code, refused.Message)
		time.Sleep(time.Second)
	}
}
