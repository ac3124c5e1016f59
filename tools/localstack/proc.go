package localstack

import "syscall"

// syscallAlive reports whether pid is a running process.
func syscallAlive(pid int) error {
	if pid <= 0 {
		return syscall.ESRCH
	}
	return syscall.Kill(pid, 0)
}
