package nodeimages

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Registry prefixes every image name: a host part keeps CRI from
// rewriting the name to docker.io, and nothing ever pulls from it.
const Registry = "pressroom.local"

// DefaultPath is PATH in every image.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HostCABundle is copied into every image, at caPath.
var HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

const caPath = "/etc/ssl/certs/ca-certificates.crt"

// Part is one static binary the node runs besides the services (the parts
// K3s bundles, and helpers). The paths and users are the upstream images',
// so manifests written for those images work unchanged:
//
//	name                     path in image                    user   caps
//	coredns                  /coredns                         65532  NET_BIND_SERVICE
//	metrics-server           /metrics-server                  65534
//	traefik                  /traefik                         65532
//	local-path-provisioner   /usr/bin/local-path-provisioner  0 (root)
//	cert-manager-<cmd>       /app/cmd/<cmd>/<cmd>             1000   (controller, webhook, cainjector, acmesolver, ctl)
//	jaeger                   /cmd/jaeger/jaeger-linux         10001  (Jaeger v2)
//	nats                     /usr/local/bin/nats-server       1000   (on PATH: the pod's command is "nats-server")
//	pause                    /pause                           65535
type Part struct {
	Name, Path, User string
	Caps             []string
}

// Parts is the table above.
var Parts = []Part{
	{Name: "coredns", Path: "/coredns", User: "65532", Caps: []string{"CAP_NET_BIND_SERVICE"}},
	{Name: "metrics-server", Path: "/metrics-server", User: "65534"},
	{Name: "traefik", Path: "/traefik", User: "65532"},
	{Name: "local-path-provisioner", Path: "/usr/bin/local-path-provisioner", User: "0"},
	{Name: "cert-manager-controller", Path: "/app/cmd/controller/controller", User: "1000"},
	{Name: "cert-manager-webhook", Path: "/app/cmd/webhook/webhook", User: "1000"},
	{Name: "cert-manager-cainjector", Path: "/app/cmd/cainjector/cainjector", User: "1000"},
	{Name: "cert-manager-acmesolver", Path: "/app/cmd/acmesolver/acmesolver", User: "1000"},
	{Name: "cert-manager-ctl", Path: "/app/cmd/ctl/ctl", User: "1000"},
	{Name: "jaeger", Path: "/cmd/jaeger/jaeger-linux", User: "10001"},
	{Name: "nats", Path: "/usr/local/bin/nats-server", User: "1000"},
	{Name: "pause", Path: "/pause", User: "65535"},
}

// PartByName finds a row of Parts.
func PartByName(name string) (Part, bool) {
	for _, p := range Parts {
		if p.Name == name {
			return p, true
		}
	}
	return Part{}, false
}

// Spec is the part's image around binary.
func (p Part) Spec(tag, binary string) Spec {
	return StaticSpec(Registry+"/"+p.Name, tag, binary, p.Path, p.User, p.Caps)
}

// StaticSpec is one static binary at pathInImage plus the CA bundle,
// passwd/group (with an entry for user) and /tmp. user is "uid", "uid:gid"
// or "root"; a bare uid runs with gid = uid.
func StaticSpec(name, tag, binary, pathInImage, user string, caps []string) Spec {
	uid, gid := parseUser(user)
	return Spec{
		Name: name, Tag: tag,
		Files: append(baseFiles(account{"app", uid, gid, "/"}),
			File{Path: pathInImage, Source: binary, Mode: 0o755, Capabilities: caps}),
		Entrypoint: []string{pathInImage},
		Env:        []string{DefaultPath},
		User:       fmt.Sprintf("%d:%d", uid, gid),
	}
}

// ServiceSpec mirrors services/<name>/Dockerfile on distroless
// static-debian12:nonroot: /<name>, CA bundle, tzdata (0.2 MB compressed,
// so kept), passwd/group, /tmp, uid 65532, distroless' env. The tag is
// derived from the content.
func ServiceSpec(name, binary string, port int) Spec {
	files := append(baseFiles(), File{Path: "/" + name, Source: binary, Mode: 0o755})
	files = append(files, Dir("/home/nonroot", 0o700, 65532, 65532))
	if zi, err := Tree("/usr/share/zoneinfo", "/usr/share/zoneinfo", skipZoneinfo); err == nil {
		files = append(files, zi...)
	}
	return Spec{
		Name: Registry + "/" + name, Files: files,
		Entrypoint:   []string{"/" + name},
		Env:          []string{DefaultPath, "SSL_CERT_FILE=" + caPath},
		User:         "65532:65532",
		ExposedPorts: []string{strconv.Itoa(port) + "/tcp"},
	}
}

// ServicePort reads EXPOSE from services/<svc>/Dockerfile, so images
// built here and by Docker agree.
func ServicePort(repoRoot, svc string) (int, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "services", svc, "Dockerfile"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "EXPOSE" {
			return strconv.Atoi(strings.TrimSuffix(f[1], "/tcp"))
		}
	}
	return 0, fmt.Errorf("services/%s/Dockerfile: no EXPOSE", svc)
}

// skipZoneinfo drops right/ (leap-second variants, half the size) and the
// absolute localtime link, as distroless does.
func skipZoneinfo(rel string) bool { return rel == "right" || rel == "localtime" }

// BuildServiceBinary builds services/<svc> exactly as its Dockerfile does.
func BuildServiceBinary(ctx context.Context, repoRoot, svc, out string) error {
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./services/"+svc)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./services/%s: %w\n%s", svc, err, b)
	}
	return nil
}

// BusyboxSpec is Debian's busybox-static with every applet linked in /bin,
// the image local-path-provisioner's helper pods run (sh -c "mkdir …").
func BusyboxSpec(name, tag string) (Spec, error) {
	bb, err := BusyboxFiles("/bin/busybox")
	if err != nil {
		return Spec{}, err
	}
	return Spec{
		Name: name, Tag: tag, Files: append(baseFiles(), bb...),
		Cmd: []string{"sh"}, Env: []string{DefaultPath},
	}, nil
}

// BusyboxFiles is the binary at /bin/busybox and one symlink per applet.
func BusyboxFiles(binary string) ([]File, error) {
	out, err := exec.Command(binary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", binary, err)
	}
	files := []File{{Path: "/bin/busybox", Source: binary, Mode: 0o755}}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			files = append(files, Symlink("/bin/"+a, "busybox"))
		}
	}
	return files, nil
}

type account struct {
	name     string
	uid, gid int
	home     string
}

// baseFiles is what distroless static has: CA bundle, passwd/group with
// root, nobody and nonroot (plus extra accounts), world-writable /tmp.
func baseFiles(extra ...account) []File {
	accts := []account{{"root", 0, 0, "/root"}, {"nobody", 65534, 65534, "/nonexistent"}, {"nonroot", 65532, 65532, "/home/nonroot"}}
	seenU, seenG := map[int]bool{}, map[int]bool{}
	var passwd, group bytes.Buffer
	for _, a := range append(accts, extra...) {
		if !seenU[a.uid] {
			seenU[a.uid] = true
			fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:/sbin/nologin\n", a.name, a.uid, a.gid, a.name, a.home)
		}
		if !seenG[a.gid] {
			seenG[a.gid] = true
			fmt.Fprintf(&group, "%s:x:%d:\n", a.name, a.gid)
		}
	}
	return []File{
		{Path: caPath, Source: HostCABundle, Mode: 0o644},
		{Path: "/etc/passwd", Content: passwd.Bytes(), Mode: 0o644},
		{Path: "/etc/group", Content: group.Bytes(), Mode: 0o644},
		Dir("/tmp", os.ModeSticky|0o777, 0, 0),
	}
}

func parseUser(u string) (uid, gid int) {
	if u == "" || u == "root" {
		return 0, 0
	}
	us, gs, ok := strings.Cut(u, ":")
	uid, _ = strconv.Atoi(us)
	gid = uid
	if ok {
		gid, _ = strconv.Atoi(gs)
	}
	return uid, gid
}

// Tree copies the host directory src to dst in the image: directories and
// files with their permissions, symlinks as they are, owned by root. skip
// gets paths relative to src.
func Tree(src, dst string, skip func(rel string) bool) ([]File, error) {
	var files []File
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel != "." && skip != nil && skip(filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			files = append(files, Dir(target, info.Mode().Perm(), 0, 0))
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files = append(files, Symlink(target, link))
		case d.Type().IsRegular():
			files = append(files, File{Path: target, Source: p, Mode: info.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky)})
		}
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, err
}
