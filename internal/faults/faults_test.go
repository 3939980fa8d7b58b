//go:build faults

package faults

import (
	"fmt"
	"testing"
)

// scenario is one fault: it starts its own mesh, injects the fault and
// fills in its row.
type scenario struct {
	name  string
	fault string
	run   func(t *testing.T, m *mesh, r *row, n int)
}

var scenarios = []scenario{
	{"client_drop_resume", "client network drop, resume within the grace", clientDropResume},
	{"gateway_kill_resume", "gateway SIGKILL, clients resume on another gateway", gatewayKillResume},
	{"gateway_kill_gone", "gateway SIGKILL, clients do not come back", gatewayKillGone},
	{"gateway_term_drain", "gateway SIGTERM (drain, `goaway`)", gatewayTermDrain},
	{"router_kill", "router SIGKILL during call setup and teardown (one, restart, then the other)", routerKill},
	{"nats_kill_restart", "NATS node SIGKILL (stream leader) and restart", natsKillRestart},
	{"room_gateway_kill", "gateway SIGKILL with room members on it, some resume elsewhere, some do not come back", roomGatewayKill},
	{"room_router_kill", "router SIGKILL during room joins and leaves to full rooms (one, restart, then the other)", roomRouterKill},
}

// TestFaults runs every scenario against its own mesh of processes and
// prints the table. -short runs fewer calls per fault.
func TestFaults(t *testing.T) {
	n := 12
	if testing.Short() {
		n = 4
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			r := &row{fault: sc.fault}
			var m *mesh
			// Registered first, so that it runs last: after the scenario,
			// also one that failed to start its mesh.
			t.Cleanup(func() {
				if m != nil {
					m.mu.Lock()
					for _, c := range m.clients {
						c.mu.Lock()
						r.doubleBook += c.doubleBook
						r.wrongRoom += c.wrongRoom
						c.mu.Unlock()
					}
					m.mu.Unlock()
				}
				if t.Failed() {
					r.fault += " **FAIL**"
				}
				addRow(r)
				if !r.ok() {
					t.Errorf("%s: %d wrong outcomes; continued %d/%d; ended correctly %d/%d",
						sc.fault, r.wrong(), r.continued, r.continuedWant, r.endedOK, r.endedWant)
				}
			})
			m = startMesh(t, 3)
			sc.run(t, m, r, n)
		})
	}
	table := markdown()
	t.Log("\n" + table)
	fmt.Println(table)
}
