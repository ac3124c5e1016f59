package nodeimages

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testSpec(t *testing.T, reverse bool) Spec {
	src := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho hi\n"), 0o751); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: "/usr/local/bin/tool", Source: src},
		{Path: "/etc/motd", Content: []byte("hello\n")},
		Dir("/var/run/app", os.ModeSetgid|0o775, 70, 70),
		Symlink("/usr/bin/tool", "../local/bin/tool"),
		{Path: "/coredns", Content: []byte("not really coredns"), Mode: 0o755, Capabilities: []string{"CAP_NET_BIND_SERVICE"}},
		Dir("/tmp", os.ModeSticky|0o777, 0, 0),
	}
	if reverse {
		slices.Reverse(files)
	}
	return Spec{
		Name: "pressroom.local/test", Tag: "v1", Files: files,
		Entrypoint: []string{"/coredns"}, Cmd: []string{"-conf", "/etc/coredns/Corefile"},
		Env: []string{DefaultPath}, User: "65532:65532", ExposedPorts: []string{"53/udp", "53/tcp"},
		Labels: map[string]string{"b": "2", "a": "1"},
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestBuildIsDeterministic(t *testing.T) {
	a, err := Build(testSpec(t, false), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Other source files (same bytes, new mtimes), other order, other dir.
	time.Sleep(10 * time.Millisecond)
	b, err := Build(testSpec(t, true), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || fileSum(t, a.Archive) != fileSum(t, b.Archive) {
		t.Fatalf("two builds differ: %s vs %s", a.Digest, b.Digest)
	}
	if a.Ref() != "pressroom.local/test@"+a.Digest || a.TagRef() != "pressroom.local/test:v1" {
		t.Fatalf("refs: %s %s", a.Ref(), a.TagRef())
	}
	spec := testSpec(t, false)
	spec.Tag = ""
	c, err := Build(spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest != a.Digest || c.Tag != "sha256-"+strings.TrimPrefix(a.Digest, "sha256:")[:12] {
		t.Fatalf("content tag: %s %s", c.Tag, c.Digest)
	}
}

func TestBuildConfigAndLayer(t *testing.T) {
	built, err := Build(testSpec(t, false), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, idx := readImage(t, built)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] != built.TagRef() ||
		idx.Manifests[0].Platform == nil || idx.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("index: %+v", idx.Manifests)
	}
	man, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if man.MediaType != "application/vnd.oci.image.manifest.v1+json" || man.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Fatalf("media types: %s %s", man.MediaType, man.Config.MediaType)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(time.Unix(0, 0)) ||
		c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/coredns"}) ||
		len(c.ExposedPorts) != 2 || c.Labels["a"] != "1" || !slices.Equal(c.Env, []string{DefaultPath}) {
		t.Fatalf("config: %+v", cf)
	}
	if _, ok := c.ExposedPorts["53/udp"]; !ok {
		t.Fatalf("ports: %v", c.ExposedPorts)
	}

	ents := layerEntries(t, img)
	for p, want := range map[string]int64{"/tmp": 0o1777, "/var/run/app": 0o2775, "/usr/local/bin/tool": 0o751, "/etc/motd": 0o644, "/usr": 0o755} {
		h := ents[p]
		if h == nil || h.Mode != want || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: %+v, want mode %o", p, h, want)
		}
	}
	if h := ents["/var/run/app"]; h.Uid != 70 || h.Gid != 70 || h.Typeflag != tar.TypeDir {
		t.Errorf("owner: %+v", h)
	}
	if h := ents["/usr/bin/tool"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "../local/bin/tool" {
		t.Errorf("symlink: %+v", h)
	}

	// The xattr must be byte-for-byte what setcap writes.
	got := []byte(ents["/coredns"].PAXRecords["SCHILY.xattr.security.capability"])
	want := []byte{0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("security.capability = % x, want % x", got, want)
	}
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		t.Logf("no setcap: compared with the documented vfs_cap_data v2 bytes only")
		return
	}
	f := filepath.Join(t.TempDir(), "capped")
	if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(setcap, "cap_net_bind_service=+ep", f).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v %s", err, out)
	}
	real := make([]byte, 64)
	n, err := syscall.Getxattr(f, "security.capability", real)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(real[:n], got) {
		t.Fatalf("setcap wrote % x, layer has % x", real[:n], got)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, s := range []Spec{
		{Name: "web", Files: []File{{Path: "/a", Content: []byte("x")}}},
		{Name: "pressroom.local/web:v1"},
		{Name: "pressroom.local/x", Files: []File{{Path: "rel", Content: []byte("x")}}},
		{Name: "pressroom.local/x", Files: []File{Symlink("/bin", "usr/bin"), {Path: "/bin/sh", Content: []byte("x")}}},
	} {
		if _, err := Build(s, t.TempDir()); err == nil {
			t.Errorf("Build(%s %v) succeeded", s.Name, s.Files)
		}
	}
}

func TestPartsAndBusybox(t *testing.T) {
	out := t.TempDir()
	p, ok := PartByName("coredns")
	if !ok {
		t.Fatal("no coredns part")
	}
	// busybox-static stands in for any static binary.
	built, err := Build(p.Spec("v1.14.6", "/bin/busybox"), out)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := readImage(t, built)
	cf, _ := img.ConfigFile()
	ents := layerEntries(t, img)
	if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/coredns"}) ||
		ents["/coredns"].PAXRecords["SCHILY.xattr.security.capability"] == "" ||
		ents["/etc/ssl/certs/ca-certificates.crt"] == nil || ents["/tmp"].Mode != 0o1777 {
		t.Fatalf("coredns image: %+v", cf.Config)
	}
	for _, p := range Parts {
		s := p.Spec("t", "/bin/busybox")
		uid, _ := parseUser(p.User)
		var passwd []byte
		for _, f := range s.Files {
			if f.Path == "/etc/passwd" {
				passwd = f.Content
			}
		}
		if s.Entrypoint[0] != p.Path || !bytes.Contains(passwd, []byte(":x:"+strconv.Itoa(uid)+":")) {
			t.Errorf("%s: entrypoint %v, passwd %q", p.Name, s.Entrypoint, passwd)
		}
	}

	bs, err := BusyboxSpec(Registry+"/busybox", "1.35.0")
	if err != nil {
		t.Fatal(err)
	}
	bb, err := Build(bs, out)
	if err != nil {
		t.Fatal(err)
	}
	img, _ = readImage(t, bb)
	ents = layerEntries(t, img)
	for _, a := range []string{"sh", "mkdir", "rm", "chmod", "grep"} {
		if h := ents["/bin/"+a]; h == nil || h.Linkname != "busybox" {
			t.Errorf("/bin/%s: %+v", a, h)
		}
	}
	t.Logf("busybox image: %d entries, %d bytes compressed", len(ents), bb.Size)
}

func TestServiceImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds services/web (minutes with a cold cache)")
	}
	root, _ := filepath.Abs("../..")
	bin := filepath.Join(t.TempDir(), "web")
	start := time.Now()
	if err := BuildServiceBinary(context.Background(), root, "web", bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("go build ./services/web: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	built, err := Build(ServiceSpec("web", bin, 8080), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Build: %v", time.Since(start).Round(time.Millisecond))
	img, _ := readImage(t, built)
	cf, _ := img.ConfigFile()
	ents := layerEntries(t, img)
	if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/web"}) ||
		len(cf.Config.ExposedPorts) != 1 || ents["/web"] == nil || ents["/web"].Mode != 0o755 ||
		ents["/usr/share/zoneinfo/Europe/Berlin"] == nil || ents["/tmp"].Mode != 0o1777 {
		t.Fatalf("web image: %+v", cf.Config)
	}
	if built.Size > 25<<20 {
		t.Fatalf("web image is %d bytes compressed, over the 25 MiB the Dockerfile promises", built.Size)
	}
	t.Logf("web image %s: %.1f MiB compressed", built.TagRef(), float64(built.Size)/(1<<20))
}
