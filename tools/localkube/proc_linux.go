package localkube

import "syscall"

// sysProcAttr puts each component in its own process group (a terminal ^C
// reaches only us, and we stop them in order) and has the kernel kill it if
// this process dies without calling Stop.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
