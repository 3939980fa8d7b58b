//go:build faults

package faults

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one child process: a NATS node, a router or a gateway. It runs in
// its own process group so that a kill reaches everything it started, and
// t.Cleanup kills it if the test has not.
type proc struct {
	t    testing.TB
	name string
	bin  string
	args []string
	env  []string
	log  string // file holding its stdout and stderr

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // exit status; set before done is closed
}

// start runs bin args as a new process named name, appending its output to
// a log file in dir.
func start(t testing.TB, dir, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: bin, args: args, env: env, log: filepath.Join(dir, name+".log")}
	p.run()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); p.wait(10 * time.Second) })
	return p
}

// run (re)starts the process.
func (p *proc) run() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

// signal sends sig to the process group, if the process still runs.
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}

// wait waits up to d for the process to exit and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	if !p.wait(10 * time.Second) {
		p.t.Fatalf("%s survived SIGKILL", p.name)
	}
}

// exitErr is how the process exited (nil: status 0); valid after wait.
func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// tail is the last lines of a log file, for failure messages.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 15 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// givenPorts are the ports freePort has handed out in this test binary:
// never handed out twice. The kernel readily gives a port that was just
// closed to the next listener on port 0, so picking ports one after the
// other gave two nodes of a cluster the same port in about 1 set of 9 in
// 140 (measured), and one node failed to start.
var givenPorts struct {
	sync.Mutex
	m map[int]bool
}

// freePort returns a loopback TCP port that was free a moment ago and that
// it has not returned before.
func freePort(t testing.TB) int {
	t.Helper()
	givenPorts.Lock()
	defer givenPorts.Unlock()
	if givenPorts.m == nil {
		givenPorts.m = map[int]bool{}
	}
	// Held open until one is chosen, so that the kernel offers another.
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, ln)
		if port := ln.Addr().(*net.TCPAddr).Port; !givenPorts.m[port] {
			givenPorts.m[port] = true
			return port
		}
	}
	t.Fatal("no loopback port that was not handed out before")
	return 0
}

// waitFor polls f until it returns nil, failing the test with f's last
// error after d. A deadline for failing, never a timing being asserted.
func waitFor(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	if err := poll(d, f); err != nil {
		t.Fatalf("after %v: %v", d, err)
	}
}

// poll polls f until it returns nil and returns nil, or returns f's last
// error after d.
func poll(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(25 * time.Millisecond)
	}
}
