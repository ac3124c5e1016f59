package nodeimages

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startContainerd runs a throw-away containerd whose root, state and
// sockets are all under a temp dir, and stops it by PID at cleanup.
func startContainerd(t *testing.T) (socket, root string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts containerd")
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Skip("no containerd")
	}
	dir := t.TempDir()
	socket = filepath.Join(dir, "containerd.sock")
	// CRI is off: it wants CNI and cgroups and is not what is tested here.
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, socket+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		for _, mp := range mountsUnder(t, dir) {
			t.Logf("unmounting %s", mp)
			if err := syscall.Unmount(mp, 0); err != nil {
				syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if exec.Command("ctr", "--address", socket, "version").Run() == nil {
			return socket, filepath.Join(dir, "root")
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("containerd did not start:\n%s", b)
		}
	}
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(t *testing.T, dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	slices.Reverse(out)
	return out
}

func imageRecords(t *testing.T, im Importer) map[string]string {
	t.Helper()
	out, err := im.ctr(context.Background(), "images", "ls")
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]string{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 3 {
			recs[f[0]] = f[2]
		}
	}
	return recs
}

func TestImportIntoContainerd(t *testing.T) {
	socket, root := startContainerd(t)
	out := t.TempDir()
	static := StaticSpec(Registry+"/static", "v1", "/bin/busybox", "/bin/busybox", "65532", []string{"CAP_NET_BIND_SERVICE"})
	a, err := Build(static, out)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := BusyboxSpec(Registry+"/busybox", "1.35.0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(bs, out)
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	im := Importer{Address: socket, Namespace: "k8s.io", Snapshotter: "overlayfs", Logf: func(f string, args ...any) {
		log = append(log, fmt.Sprintf(f, args...))
	}}
	ctx := context.Background()

	start := time.Now()
	if err := im.Import(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("first import: %v", time.Since(start).Round(time.Millisecond))
	recs := imageRecords(t, im)
	for _, img := range []Image{a, b} {
		if recs[img.Ref()] != img.Digest || recs[img.TagRef()] != img.Digest {
			t.Fatalf("%s: records %v", img.Ref(), recs)
		}
	}
	have, err := im.check(ctx)
	if err != nil || !have.ready(a) || !have.ready(b) {
		t.Fatalf("not unpacked for overlayfs: %v %v", have, err)
	}

	// The unpacked file carries the capability (the snapshotter applied the PAX xattr).
	snaps, _ := filepath.Glob(filepath.Join(root, "io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/bin/busybox"))
	xattr := make([]byte, 64)
	found := false
	for _, p := range snaps {
		if n, err := syscall.Getxattr(p, "security.capability", xattr); err == nil && n == 20 && xattr[5] == 0x04 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no unpacked /bin/busybox with security.capability in %v", snaps)
	}

	log = nil
	start = time.Now()
	if err := im.Import(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	t.Logf("re-import: %v (%v)", time.Since(start).Round(time.Millisecond), log)
	if len(log) != 2 || !strings.HasPrefix(log[0], "up to date") || !strings.HasPrefix(log[1], "up to date") {
		t.Fatalf("re-import did work: %v", log)
	}

	// A rebuild under the same tag moves the tag; the old digest stays
	// resolvable for pods that still pin it.
	static.Files = append(static.Files, File{Path: "/etc/motd", Content: []byte("v2\n")})
	a2, err := Build(static, out)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Digest == a.Digest {
		t.Fatal("changed content, same digest")
	}
	if err := im.Import(ctx, a2); err != nil {
		t.Fatal(err)
	}
	recs = imageRecords(t, im)
	if recs[a2.TagRef()] != a2.Digest || recs[a2.Ref()] != a2.Digest || recs[a.Ref()] != a.Digest {
		t.Fatalf("after rebuild: %v", recs)
	}
	t.Logf("records: %v", recs)
}
