package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kinds are the objects the chart may render, by apiVersion and kind, each
// with a constructor of its Go type. Anything else is an error: add it here
// when the chart grows.
var kinds = map[string]func() any{
	"apps/v1 Deployment":                      func() any { return new(appsv1.Deployment) },
	"apps/v1 DaemonSet":                       func() any { return new(appsv1.DaemonSet) },
	"v1 Service":                              func() any { return new(corev1.Service) },
	"v1 Secret":                               func() any { return new(corev1.Secret) },
	"networking.k8s.io/v1 Ingress":            func() any { return new(networkingv1.Ingress) },
	"autoscaling/v2 HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1 PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1 ServiceMonitor": func() any { return new(monitoringv1.ServiceMonitor) },
}

// workload is a Deployment or DaemonSet: what checks need of either.
type workload struct {
	kind, name string
	replicas   int32 // DaemonSets: 1
	template   *corev1.PodTemplateSpec
}

// manifests are the decoded objects of one rendering, sorted by kind.
type manifests struct {
	all          []any
	workloads    []workload
	services     []*corev1.Service
	secrets      []*corev1.Secret
	ingresses    []*networkingv1.Ingress
	autoscalers  []*autoscalingv2.HorizontalPodAutoscaler
	budgets      []*policyv1.PodDisruptionBudget
	monitors     []*monitoringv1.ServiceMonitor
	deployByName map[string]bool
}

// readManifests decodes every document of path strictly: unknown fields,
// duplicate fields and wrong types are errors.
func readManifests(path string) (*manifests, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &manifests{deployByName: map[string]bool{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if tm.Kind == "" && len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue // empty: a template that rendered nothing
		}
		newObj, ok := kinds[tm.APIVersion+" "+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("document %d: %s %s is not a kind chartcheck knows", i, tm.APIVersion, tm.Kind)
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		m.add(obj)
	}
}

func (m *manifests) add(obj any) {
	m.all = append(m.all, obj)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		replicas := int32(1)
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
		m.workloads = append(m.workloads, workload{"Deployment", o.Name, replicas, &o.Spec.Template})
		m.deployByName[o.Name] = true
	case *appsv1.DaemonSet:
		m.workloads = append(m.workloads, workload{"DaemonSet", o.Name, 1, &o.Spec.Template})
	case *corev1.Service:
		m.services = append(m.services, o)
	case *corev1.Secret:
		m.secrets = append(m.secrets, o)
	case *networkingv1.Ingress:
		m.ingresses = append(m.ingresses, o)
	case *autoscalingv2.HorizontalPodAutoscaler:
		m.autoscalers = append(m.autoscalers, o)
	case *policyv1.PodDisruptionBudget:
		m.budgets = append(m.budgets, o)
	case *monitoringv1.ServiceMonitor:
		m.monitors = append(m.monitors, o)
	}
}

// stripComments drops the YAML comment lines of doc.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, line...)
		}
	}
	return out
}
