package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

const componentLabel = "app.kubernetes.io/component"

// listenAddrVar is, per callmesh command, the variable of the address its
// /healthz is served on.
var listenAddrVar = map[string]string{
	"gateway": "CALLMESH_HTTP_ADDR",
	"router":  "CALLMESH_ROUTER_HTTP_ADDR",
	"turn":    "CALLMESH_TURN_HTTP_ADDR",
	"webhook": "CALLMESH_WEBHOOK_HTTP_ADDR",
}

type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// check reports what the rendering gets wrong. keys, when not nil, are the
// CALLMESH_ variables callmesh knows.
func check(m *manifests, keys map[string]bool) []string {
	var p problems
	for _, w := range m.workloads {
		checkPod(&p, w, keys)
		switch w.template.Labels[componentLabel] {
		case "gateway":
			checkGatewayGrace(&p, w)
			checkBudget(&p, m, w)
		case "router":
			if w.replicas < 2 {
				p.addf("%s %s: %d replicas; routers need two or more", w.kind, w.name, w.replicas)
			}
			checkBudget(&p, m, w)
		}
	}
	checkServices(&p, m)
	checkIngresses(&p, m)
	for _, h := range m.autoscalers {
		if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || !m.deployByName[ref.Name] {
			p.addf("HorizontalPodAutoscaler %s scales %s %s, which is not rendered", h.Name, ref.Kind, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			p.addf("HorizontalPodAutoscaler %s: fewer than 2 replicas leaves a draining gateway's clients nowhere to go", h.Name)
		}
	}
	for _, sm := range m.monitors {
		for _, ep := range sm.Spec.Endpoints {
			if !anyServicePort(m, sm.Spec.Selector.MatchLabels, ep.Port) {
				p.addf("ServiceMonitor %s: no Service it selects has a port %q", sm.Name, ep.Port)
			}
		}
	}
	return p
}

// checkPod: no service links (they add CALLMESH_<SERVICE>_* variables,
// which callmesh refuses), only known CALLMESH_ variables, each set once,
// and a readiness probe on /healthz at the port the command listens on.
func checkPod(p *problems, w workload, keys map[string]bool) {
	spec := &w.template.Spec
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		p.addf("%s %s: enableServiceLinks is not false", w.kind, w.name)
	}
	for _, c := range spec.Containers {
		where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
		seen := map[string]bool{}
		for _, e := range c.Env {
			if seen[e.Name] {
				p.addf("%s: %s is set twice", where, e.Name)
			}
			seen[e.Name] = true
			if keys != nil && strings.HasPrefix(e.Name, "CALLMESH_") && !keys[e.Name] {
				p.addf("%s: %s is no callmesh config key", where, e.Name)
			}
		}
		if len(c.Args) == 0 {
			p.addf("%s: no command in args", where)
			continue
		}
		addrVar, ok := listenAddrVar[c.Args[0]]
		if !ok {
			p.addf("%s: unknown command %q", where, c.Args[0])
			continue
		}
		want, err := portOf(envValue(c, addrVar))
		if err != nil {
			p.addf("%s: %s: %v", where, addrVar, err)
			continue
		}
		probe := c.ReadinessProbe
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != "/healthz" {
			p.addf("%s: no readiness probe on /healthz", where)
			continue
		}
		if got := containerPort(c, probe.HTTPGet.Port); got != want {
			p.addf("%s: readiness probe on port %d, but %s listens on %d", where, got, c.Args[0], want)
		}
	}
}

// checkGatewayGrace: Kubernetes must not kill a gateway before its preStop
// sleep, its drain (http.drain_timeout) and 15 s more are over.
func checkGatewayGrace(p *problems, w workload) {
	spec := &w.template.Spec
	for _, c := range spec.Containers {
		drain, err := time.ParseDuration(envValue(c, "CALLMESH_HTTP_DRAIN_TIMEOUT"))
		if err != nil {
			p.addf("%s %s: CALLMESH_HTTP_DRAIN_TIMEOUT: %v", w.kind, w.name, err)
			continue
		}
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		need := preStop + drain + 15*time.Second
		grace := 30 * time.Second // Kubernetes' default
		if spec.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		}
		if grace < need {
			p.addf("%s %s: terminationGracePeriodSeconds %v is less than preStop %v + drain %v + 15s",
				w.kind, w.name, grace, preStop, drain)
		}
	}
}

// checkBudget: some PodDisruptionBudget covers w's pods.
func checkBudget(p *problems, m *manifests, w workload) {
	for _, b := range m.budgets {
		if b.Spec.Selector != nil && selects(b.Spec.Selector.MatchLabels, w.template.Labels) {
			return
		}
	}
	p.addf("%s %s: no PodDisruptionBudget selects its pods", w.kind, w.name)
}

// checkServices: each Service selects pods, on ports they have.
func checkServices(p *problems, m *manifests) {
	for _, s := range m.services {
		var pods *workload
		for i := range m.workloads {
			if selects(s.Spec.Selector, m.workloads[i].template.Labels) {
				pods = &m.workloads[i]
				break
			}
		}
		if pods == nil {
			p.addf("Service %s selects no pods", s.Name)
			continue
		}
		for _, sp := range s.Spec.Ports {
			found := false
			for _, c := range pods.template.Spec.Containers {
				found = found || containerPort(c, sp.TargetPort) != 0
			}
			if !found && sp.TargetPort.Type == intstr.String {
				p.addf("Service %s: port %s targets %q, which %s %s does not name", s.Name, sp.Name, sp.TargetPort.StrVal, pods.kind, pods.name)
			}
		}
	}
}

// checkIngresses: backends exist; nginx keeps WebSockets open an hour; the
// gateways' /metrics is not routed.
func checkIngresses(p *problems, m *manifests) {
	for _, in := range m.ingresses {
		if in.Spec.IngressClassName != nil && *in.Spec.IngressClassName == "nginx" {
			for _, a := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
				v, err := strconv.Atoi(in.Annotations["nginx.ingress.kubernetes.io/"+a])
				if err != nil || v < 3600 {
					p.addf("Ingress %s: nginx %s %q, want at least 3600 (WebSockets last)", in.Name, a, in.Annotations["nginx.ingress.kubernetes.io/"+a])
				}
			}
		}
		for _, rule := range in.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, path := range rule.HTTP.Paths {
				if routes(path.Path, path.PathType, "/metrics") {
					p.addf("Ingress %s: path %s routes /metrics to the internet", in.Name, path.Path)
				}
				b := path.Backend.Service
				svc := serviceNamed(m, b.Name)
				if svc == nil {
					p.addf("Ingress %s: backend Service %s is not rendered", in.Name, b.Name)
				} else if b.Port.Name != "" && !servicePortNamed(svc, b.Port.Name) {
					p.addf("Ingress %s: Service %s has no port %q", in.Name, b.Name, b.Port.Name)
				}
			}
		}
	}
}

// routes reports whether an Ingress path of type typ routes target.
func routes(path string, typ *networkingv1.PathType, target string) bool {
	if typ != nil && *typ == "Exact" {
		return path == target
	}
	return strings.HasPrefix(target, strings.TrimSuffix(path, "/")+"/") || path == target || path == "/"
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// portOf is the port of a listen address host:port ($(HOST_IP):8478 too).
func portOf(addr string) (int, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

// containerPort resolves a probe's or Service's port against c: a number
// as is, a name to c's port of that name (0: none).
func containerPort(c corev1.Container, port intstr.IntOrString) int {
	if port.Type == intstr.Int {
		return port.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

// selects reports whether a non-empty selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// anyServicePort reports whether a Service selector picks has a port named port.
func anyServicePort(m *manifests, selector map[string]string, port string) bool {
	for _, s := range m.services {
		if selects(selector, s.Labels) && servicePortNamed(s, port) {
			return true
		}
	}
	return false
}

func serviceNamed(m *manifests, name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func servicePortNamed(s *corev1.Service, name string) bool {
	for _, sp := range s.Spec.Ports {
		if sp.Name == name {
			return true
		}
	}
	return false
}
