package peertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a child program owned by one test: started with stdin from /dev/null and stdout
// and stderr in files, reaped by one goroutine, and killed by Stop or the test's cleanup.
type process struct {
	name string
	args []string
	dir  string // working directory and log directory

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped

	// Set before done is closed.
	exitCode int
	exitErr  error

	stopOnce sync.Once
}

func startProcess(name, bin, dir string, args []string) (*process, error) {
	stdout, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		stdout.Close()
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = nil // /dev/null: neither sipp nor baresip may wait for a terminal
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// Own process group, so a ^C on `go test` does not reach the peers first and Stop can take
	// down anything they spawned.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, args: args, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		stdout.Close()
		stderr.Close()
		p.exitCode = cmd.ProcessState.ExitCode()
		var exitErr *exec.ExitError
		if err != nil && !(errors.As(err, &exitErr) && exitErr.Exited()) {
			p.exitErr = fmt.Errorf("%s: %w", name, err) // killed by a signal, or a Wait failure
		}
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Wait waits until the process exits or ctx ends. A process that exited by itself gives its
// exit code and a nil error whatever the code; one killed by a signal gives -1 and an error.
func (p *process) Wait(ctx context.Context) (exitCode int, err error) {
	select {
	case <-p.done:
		return p.exitCode, p.exitErr
	case <-ctx.Done():
		return -1, fmt.Errorf("%s still running: %w", p.name, ctx.Err())
	}
}

// exited reports whether the process has been reaped, without blocking.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop kills the process group and waits for the process to be reaped. Safe to call repeatedly
// and after the process exited.
func (p *process) Stop() {
	p.stopOnce.Do(func() {
		if !p.exited() {
			// Negative pid: the whole group (Setpgid above made the child its leader).
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			// Reaping a SIGKILLed child cannot take this long; leave a trace instead of hanging.
			fmt.Fprintf(os.Stderr, "peertest: %s (pid %d) not reaped 10 s after SIGKILL\n", p.name, p.cmd.Process.Pid)
		}
	})
}

// terminate asks the process to exit (SIGTERM) and waits up to grace before killing it, so
// programs that write files on exit (baresip's recordings) can finish them.
func (p *process) terminate(grace time.Duration) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	p.Stop()
}

// commandLine is the command as a shell would show it, for logs.
func (p *process) commandLine() string {
	return p.name + " " + strings.Join(p.args, " ")
}

// status describes how the process ended, or that it still runs.
func (p *process) status() string {
	if !p.exited() {
		return "running, pid " + strconv.Itoa(p.cmd.Process.Pid)
	}
	if p.exitErr != nil {
		return p.exitErr.Error()
	}
	return "exit code " + strconv.Itoa(p.exitCode)
}

// logTail returns the last max bytes of a file in the process's directory, or "" without it.
func (p *process) logTail(name string, max int64) string {
	return fileTail(filepath.Join(p.dir, name), max)
}

func fileTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := int64(0)
	if st.Size() > max {
		off = st.Size() - max
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:] // start at a line boundary
		}
		b = append([]byte("[…]\n"), b...)
	}
	return string(b)
}

// socketInodes lists the inodes of the sockets a process has open, from /proc/PID/fd.
func socketInodes(pid int) map[string]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	return inodes
}

// ownsPort reports whether process pid has bound port (any local address) on network "udp" or
// "tcp" (listening). It reads /proc (Linux) so that checking does not take the port from the
// process that is about to bind it.
func ownsPort(pid int, network string, port int) bool {
	inodes := socketInodes(pid)
	if len(inodes) == 0 {
		return false
	}
	files := map[string][]string{
		"udp": {"/proc/net/udp", "/proc/net/udp6"},
		"tcp": {"/proc/net/tcp", "/proc/net/tcp6"},
	}[network]
	want := fmt.Sprintf(":%04X", port)
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ..."
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 10 || !strings.HasSuffix(f[1], want) || !inodes[f[9]] {
				continue
			}
			if network == "tcp" && f[3] != "0A" { // TCP_LISTEN
				continue
			}
			return true
		}
	}
	return false
}

// newLogDir makes a fresh directory for one process's files inside the test's temporary
// directory, which the testing package removes after the cleanups ran.
func newLogDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), prefix)
	if err != nil {
		t.Fatalf("peertest: %v", err)
	}
	return dir
}
