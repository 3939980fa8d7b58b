package router

import (
	"context"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// ringAgainAfter is when the router that rang a call's devices sends the
// incoming once more, if the call still rings.
const ringAgainAfter = time.Second

// rings reports whether out rings the callee's devices.
func rings(out Outcome) bool {
	for _, e := range out.Effects {
		if e.Delivery.Env.Type == messages.TypeIncoming {
			return true
		}
	}
	return false
}

// ringAgain sends a ringing call's incoming again after ringAgainAfter.
// A device that connected just before the invite may have subscribed on
// one node of a NATS cluster while the router published on another that
// had not learnt of it yet (interest spreads asynchronously), and core NATS
// drops such a publish. Devices that have the call drop the repeat.
func (r *Router) ringAgain(id string) {
	time.AfterFunc(ringAgainAfter, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := r.store.Call(ctx, id)
		if err != nil || c == nil || c.State != Ringing {
			return
		}
		r.publish([]Effect{toDevices(c, "", &messages.Envelope{Type: messages.TypeIncoming, Call: c.ID, From: c.Caller, Data: c.Data})})
	})
}
