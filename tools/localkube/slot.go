package localkube

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir holds one lock per slot: a node of a slot runs while a process
// holds its lock (the lock file names the process).
var lockDir = "/run/pressroom"

type slotLock struct {
	slot int
	f    *os.File
}

// AnySlot asks for the first free slot from 1 (slot 0 is make cluster's).
const AnySlot = -1

// ErrSlotBusy is returned when the slot's node is running.
var ErrSlotBusy = errors.New("localkube: node slot is in use")

// lockSlot takes slot (or, for AnySlot, the first free one from 1).
func lockSlot(slot int) (*slotLock, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("localkube: %w", err)
	}
	try := []int{slot}
	if slot == AnySlot {
		try = nil
		for s := 1; s <= MaxSlot; s++ {
			try = append(try, s)
		}
	} else if slot < 0 || slot > MaxSlot {
		return nil, fmt.Errorf("localkube: slot %d: use 0-%d", slot, MaxSlot)
	}
	var busy []string
	for _, s := range try {
		path := filepath.Join(lockDir, fmt.Sprintf("node-%d.lock", s))
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("localkube: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			b, _ := os.ReadFile(path)
			f.Close()
			busy = append(busy, fmt.Sprintf("slot %d by pid %s", s, strings.TrimSpace(string(b))))
			continue
		}
		_ = f.Truncate(0)
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return &slotLock{slot: s, f: f}, nil
	}
	return nil, fmt.Errorf("%w: %s (stop that node first, or let it finish)", ErrSlotBusy, strings.Join(busy, ", "))
}

func (l *slotLock) release() {
	_ = l.f.Truncate(0)
	_ = l.f.Close()
}

// The kubelet sets these kernel settings at start (and K3s' kubelet does on
// a droplet). They are global to the machine, so a node records them before
// its kubelet starts and puts them back when it stops.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// One record for all slots: the first node to start records the machine's
// values, the last to stop puts them back.
func sysctlFile() string { return filepath.Join(lockDir, "node.sysctl") }

// saveSysctls records the settings unless a record already exists (another
// node runs, or one died without Stop and left the original values there).
func saveSysctls() error {
	if _, err := os.Stat(sysctlFile()); err == nil {
		return nil
	}
	vals := map[string]string{}
	for _, k := range kubeletSysctls {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil {
			continue
		}
		vals[k] = strings.TrimSpace(string(b))
	}
	b, _ := json.Marshal(vals)
	if err := os.WriteFile(sysctlFile(), b, 0o644); err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	return nil
}

// restoreSysctls writes back what saveSysctls recorded and forgets it,
// unless a node of another slot still runs.
func restoreSysctls(slot int) error {
	if othersRunning(slot) {
		return nil
	}
	b, err := os.ReadFile(sysctlFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	var vals map[string]string
	if err := json.Unmarshal(b, &vals); err != nil {
		return fmt.Errorf("localkube: %s: %w", sysctlFile(), err)
	}
	var errs []error
	for k, v := range vals {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("localkube: restore %s=%s: %w", k, v, err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(sysctlFile())
	}
	return errors.Join(errs...)
}

// othersRunning reports whether a node of another slot holds its lock.
func othersRunning(slot int) bool {
	for s := 0; s <= MaxSlot; s++ {
		if s == slot {
			continue
		}
		f, err := os.OpenFile(filepath.Join(lockDir, fmt.Sprintf("node-%d.lock", s)), os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		f.Close()
		if err != nil {
			return true
		}
	}
	return false
}
