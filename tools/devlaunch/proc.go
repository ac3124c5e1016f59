package devlaunch

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one child process. It is stopped by its own PID, never by name.
type proc struct {
	name string
	cmd  *exec.Cmd
	sig  syscall.Signal // how to ask it to stop; default SIGTERM
	done chan struct{}
	err  error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || p.cmd.Process == nil {
		return nil
	}
	if p.exited() {
		return nil
	}
	sig := p.sig
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s; killed", p.name, grace)
	}
}

// prefixWriter copies lines to out with a fixed prefix, whole lines at a time.
type prefixWriter struct {
	mu     *sync.Mutex
	out    io.Writer
	prefix string
}

func (l *Launcher) logPipe(name string) io.WriteCloser {
	pr, pw := io.Pipe()
	w := prefixWriter{mu: &l.logMu, out: l.opt.Log, prefix: fmt.Sprintf("%-12s| ", name)}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.mu.Lock()
			fmt.Fprintf(w.out, "%s%s\n", w.prefix, sc.Bytes())
			w.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return pw
}

func (l *Launcher) spawn(name, bin string, args, env []string, cred *syscall.Credential) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	logw := l.logPipe(name)
	cmd.Stdout, cmd.Stderr = logw, logw
	// Own process group: Ctrl-C reaches only the launcher, which stops children
	// in order; Pdeathsig kills them if the launcher itself dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		logw.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logw.Close()
		close(p.done)
		if !l.stopping.Load() {
			select { // the first unexpected exit is the one to report
			case l.exits <- fmt.Errorf("%s exited unexpectedly (%v); its last log lines above say why", name, p.err):
			default:
			}
		}
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}
