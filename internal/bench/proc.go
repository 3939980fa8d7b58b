package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A server's cost is read from /proc when it runs on this machine: its
// resident memory, and the CPU time it has used. Linux only; elsewhere the
// fields stay empty.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// raiseFileLimit lifts this process's soft limit on open files to its hard
// limit: every connection is a file.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// isLoopback reports whether the WebSocket URL u names this machine.
func isLoopback(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := pu.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// urlPort is the TCP port of the WebSocket URL u.
func urlPort(u string) (int, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return 0, err
	}
	p := pu.Port()
	if p == "" {
		switch pu.Scheme {
		case "wss", "https":
			return 443, nil
		}
		return 80, nil
	}
	return strconv.Atoi(p)
}

// listenerPID finds the process that listens on TCP port: the inode of the
// listening socket in /proc/net/tcp{,6}, then the process holding a file
// descriptor for it.
func listenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			fields := strings.Fields(line)
			// sl local_address rem_address st ... inode (field 9)
			if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); !ok || err != nil || int(p) != port {
				continue
			}
			inodes["socket:["+fields[9]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !inodes[target] {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err == nil {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("port %d: no process of ours holds its socket", port)
}

// procSample is a process's resident memory and CPU time at one moment.
type procSample struct {
	rss int64         // bytes
	cpu time.Duration // user + system
}

// sampleProc reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime, stime).
func sampleProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return s, fmt.Errorf("VmRSS: %w", err)
			}
			s.rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces: count from the ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("malformed stat")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return s, errors.New("malformed stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("stat: %w", err)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	return s, nil
}

// server is the process being measured, if it is local and found.
type server struct {
	pid int // 0: unknown
}

// findServer resolves the process behind the first URL: pid if given,
// else the listener of its port when the URL is local.
func findServer(pid int, urls []string) (server, error) {
	if pid != 0 {
		_, err := sampleProc(pid)
		return server{pid: pid}, err
	}
	if len(urls) == 0 || !isLoopback(urls[0]) {
		return server{}, nil
	}
	port, err := urlPort(urls[0])
	if err != nil {
		return server{}, err
	}
	p, err := listenerPID(port)
	if err != nil {
		return server{}, err
	}
	return server{pid: p}, nil
}

// sample reads the server's memory and CPU; zero when it is not known.
func (s server) sample() procSample {
	if s.pid == 0 {
		return procSample{}
	}
	ps, _ := sampleProc(s.pid)
	return ps
}
