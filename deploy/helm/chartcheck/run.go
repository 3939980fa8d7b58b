package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// startupWait is how long a started command must stay up: a config error
// (an unknown variable, a bad value, a short secret) ends it at once with
// exit code 2, while a good config waits for NATS, which no one runs here.
const startupWait = 3 * time.Second

// stopWait bounds how long a command may take to stop on SIGTERM.
const stopWait = 30 * time.Second

// envKeys are the CALLMESH_ variables of `callmesh help config`.
func envKeys(binary string) (map[string]bool, error) {
	out, err := exec.Command(binary, "help", "config").Output()
	if err != nil {
		return nil, fmt.Errorf("%s help config: %w", binary, err)
	}
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile("`(CALLMESH_[A-Z0-9_]+)`").FindAllSubmatch(out, -1) {
		keys[string(m[1])] = true
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s help config lists no CALLMESH_ variable", binary)
	}
	return keys, nil
}

// runContainers starts every container's command as Kubernetes would (its
// args, its environment and nothing else), all at once, and reports those
// that exit before startupWait or do not stop cleanly on SIGTERM.
func runContainers(binary string, m *manifests) []string {
	type result struct{ where, problem string }
	var results []*result
	var wg sync.WaitGroup
	for _, w := range m.workloads {
		for _, c := range w.template.Spec.Containers {
			r := &result{where: fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)}
			results = append(results, r)
			wg.Go(func() {
				env, err := containerEnv(c, m, w.name+"-0")
				if err == nil {
					err = startAndStop(binary, c.Args, env)
				}
				if err != nil {
					r.problem = fmt.Sprintf("`callmesh %s` with its environment: %v", strings.Join(c.Args, " "), err)
				}
			})
		}
	}
	wg.Wait()
	var p problems
	for _, r := range results {
		if r.problem != "" {
			p.addf("%s: %s", r.where, r.problem)
			continue
		}
		fmt.Printf("  %s: took its environment, waited, stopped on SIGTERM\n", r.where)
	}
	return p
}

// containerEnv is c's environment as the kubelet makes it: values from
// the rendered Secrets (or a stand-in for Secrets the user brings),
// downward-API fields, and $(VAR) references to earlier variables.
func containerEnv(c corev1.Container, m *manifests, podName string) ([]string, error) {
	values := map[string]string{}
	var env []string
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		v := e.Value
		switch src := e.ValueFrom; {
		case src == nil:
			v = ref.ReplaceAllStringFunc(v, func(s string) string {
				if val, ok := values[s[2:len(s)-1]]; ok {
					return val
				}
				return s
			})
		case src.SecretKeyRef != nil:
			v = secretValue(m, src.SecretKeyRef.Name, src.SecretKeyRef.Key)
		case src.FieldRef != nil:
			switch src.FieldRef.FieldPath {
			case "status.hostIP":
				v = "127.0.0.1"
			case "metadata.name":
				v = podName
			default:
				return nil, fmt.Errorf("%s: field %s: chartcheck cannot stand in for it", e.Name, src.FieldRef.FieldPath)
			}
		case src.ResourceFieldRef != nil:
			if src.ResourceFieldRef.Resource != "limits.memory" {
				return nil, fmt.Errorf("%s: resource %s: chartcheck cannot stand in for it", e.Name, src.ResourceFieldRef.Resource)
			}
			v = "8589934592" // without a limit, the node's allocatable memory
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				v = strconv.FormatInt(q.Value(), 10)
			}
		default:
			return nil, fmt.Errorf("%s: a source chartcheck cannot stand in for", e.Name)
		}
		values[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

// secretValue is key of the rendered Secret name, or, for a Secret the
// user brings (existingSecret), a stand-in long enough for any key.
func secretValue(m *manifests, name, key string) string {
	for _, s := range m.secrets {
		if s.Name == name {
			return string(s.Data[key])
		}
	}
	return "chartcheck-stand-in-for-" + name + "-" + key + "-0123456789abcdef"
}

// startAndStop runs binary with args and exactly env, in a network
// namespace of its own (its ports are free, and nothing it dials answers),
// for startupWait; then sends SIGTERM and expects exit code 0.
func startAndStop(binary string, args, env []string) error {
	var stderr lockedBuffer
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		// Not root: an unprivileged user namespace may still be allowed.
		cmd = exec.Command(binary, args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWNET | syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: syscall.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: syscall.Getgid(), Size: 1}},
		}
		if err2 := cmd.Start(); err2 != nil {
			return fmt.Errorf("start in a network namespace: %v; %v", err, err2)
		}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return fmt.Errorf("exited at start (%v):\n%s", err, stderr.String())
	case <-time.After(startupWait):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("after SIGTERM: %v:\n%s", err, stderr.String())
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return fmt.Errorf("still running %v after SIGTERM:\n%s", stopWait, stderr.String())
	}
}

// lockedBuffer is a bytes.Buffer written by a process's two pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
