package localkube

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The thread InNamespace used must come back to this process's namespace
// and stay alive: a thread that exits fires Pdeathsig on every child it
// forked, which once killed the node's kubelet, kube-proxy and kube-router
// minutes after `make cluster` printed "running".
func TestInNamespaceKeepsItsThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a network namespace needs root")
	}
	holder := exec.Command("unshare", "--net", "sleep", "300")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	inode := func(path string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		return st.Ino
	}
	// Wait until unshare has exec'd sleep in its own namespace.
	deadline := time.Now().Add(10 * time.Second)
	for inode("/proc/"+strconv.Itoa(holder.Process.Pid)+"/ns/net") == inode("/proc/self/ns/net") {
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not enter a namespace of its own")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var tid int
	var ln net.Listener
	err := InNamespace(holder.Process.Pid, func() (err error) {
		tid = unix.Gettid()
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	task := "/proc/self/task/" + strconv.Itoa(tid) + "/ns/net"
	if _, err := os.Stat(task); err != nil {
		t.Fatalf("thread %d is gone after InNamespace: %v", tid, err)
	}
	if inode(task) != inode("/proc/self/ns/net") {
		t.Fatalf("thread %d stayed in the other namespace", tid)
	}
	// The listener made there stays there: this namespace cannot reach it.
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the listener is reachable from this namespace")
	}
}
