package localkube

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroups is the node's own cgroup, "pressroom-node-<slot>", in every cgroup
// v1 hierarchy the kubelet uses: the node's processes go into its "system"
// child, the kubelet puts pods below "kubepods". Everything the node started,
// containerd's shims and every container included, is found there.
type cgroups struct {
	name string
	root string
}

// hierarchies are the v1 controllers the kubelet and runc need.
var hierarchies = []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio", "systemd"}

func newCgroups(slot int) *cgroups {
	return &cgroups{name: fmt.Sprintf("pressroom-node-%d", slot), root: "/sys/fs/cgroup"}
}

func (g *cgroups) dir(h string, sub ...string) string {
	return filepath.Join(append([]string{g.root, h, g.name}, sub...)...)
}

// create makes the node's cgroup and its "system" child in every hierarchy.
func (g *cgroups) create() error {
	if _, err := os.Stat(filepath.Join(g.root, "memory", "memory.limit_in_bytes")); err != nil {
		return fmt.Errorf("localkube: a node needs cgroup v1 hierarchies under %s (the kubelet runs with the cgroupfs driver): %w", g.root, err)
	}
	for _, h := range hierarchies {
		for _, d := range []string{g.dir(h), g.dir(h, "system")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("localkube: cgroup %s: %w", d, err)
			}
			if h == "cpuset" {
				// A new cpuset has no CPUs or memory nodes until given its parent's.
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					b, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
					if err == nil {
						err = os.WriteFile(filepath.Join(d, f), b, 0o644)
					}
					if err != nil {
						return fmt.Errorf("localkube: cgroup %s: %w", d, err)
					}
				}
			}
		}
	}
	return nil
}

// join moves pid into the node's "system" cgroup of every hierarchy.
func (g *cgroups) join(pid int) error {
	for _, h := range hierarchies {
		if err := os.WriteFile(g.dir(h, "system", "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("localkube: move pid %d into cgroup %s: %w", pid, g.dir(h, "system"), err)
		}
	}
	return nil
}

// pids lists the processes in the node's cgroup below sub ("" = all).
func (g *cgroups) pids(sub string) []int {
	var out []int
	seen := map[int]bool{}
	base := g.dir("pids", sub)
	_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
		return nil
	})
	return out
}

// killAll stops every process of the node's cgroup below sub: SIGTERM, then
// SIGKILL once grace has passed.
func (g *cgroups) killAll(sub string, grace time.Duration) []error {
	pids := g.pids(sub)
	if len(pids) == 0 {
		return nil
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && len(g.pids(sub)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 50 && len(g.pids(sub)) > 0; i++ {
		for _, pid := range g.pids(sub) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left := g.pids(sub); len(left) > 0 {
		return []error{fmt.Errorf("localkube: processes %v of cgroup %s survived SIGKILL", left, g.dir("pids", sub))}
	}
	return nil
}

// remove deletes the node's cgroups, deepest first (they must be empty).
func (g *cgroups) remove() error {
	var errs []error
	for _, h := range hierarchies {
		var dirs []string
		_ = filepath.WalkDir(g.dir(h), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for i := 0; i < 50; i++ { // a cgroup stays busy for a moment after its last process
				if err = os.Remove(d); err == nil || errors.Is(err, fs.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("localkube: remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// clean ends what a node of this slot left when it died without Stop.
func (g *cgroups) clean(log io.Writer) error {
	if _, err := os.Stat(g.dir("pids")); err != nil {
		return nil
	}
	if pids := g.pids(""); len(pids) > 0 {
		fmt.Fprintf(log, "localkube: stopping %d processes a previous node of this slot left in cgroup %s\n", len(pids), g.name)
	}
	if errs := g.killAll("", 5*time.Second); len(errs) > 0 {
		return errors.Join(errs...)
	}
	return g.remove()
}

// MemoryBytes is the memory the node's cgroup below sub uses now (the
// kernel's usage minus reclaimable page cache, as `kubectl top` counts).
func (g *cgroups) memoryBytes(sub string) (int64, error) {
	usage, err := readInt(g.dir("memory", sub, "memory.usage_in_bytes"))
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(g.dir("memory", sub, "memory.stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "total_inactive_file" {
			inactive, _ := strconv.ParseInt(f[1], 10, 64)
			if inactive < usage {
				usage -= inactive
			}
		}
	}
	return usage, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
