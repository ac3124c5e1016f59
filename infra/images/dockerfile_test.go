package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"pressroom.dev/stacks"
)

// distrolessBudget is what the runtime base adds, compressed (static-debian12
// is ~1 MB as pushed). The image limit is its size as pushed to and pulled
// from the registry: compressed layers.
const (
	distrolessBudget = 2 << 20
	imageLimit       = 25 << 20
)

// gzipSize is a layer's size as pushed (registries store gzip'd tar layers).
func gzipSize(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return int64(buf.Len())
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repo root not found at %s: %v", root, err)
	}
	return root
}

func workspaceModules(t *testing.T, root string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mods []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "./") {
			mods = append(mods, strings.TrimPrefix(line, "./"))
		}
	}
	if len(mods) == 0 {
		t.Fatal("go.work lists no modules")
	}
	return mods
}

var fromRE = regexp.MustCompile(`(?m)^FROM\s+(\S+)`)

// Every Dockerfile: multi-stage, every base pinned by digest, a static
// binary, the distroless nonroot runtime, and go.mod of every workspace
// module copied so the go.work workspace resolves inside the build.
func TestDockerfilesFollowTheImageContract(t *testing.T) {
	root := repoRoot(t)
	mods := workspaceModules(t, root)
	for _, svc := range stacks.Services {
		b, err := os.ReadFile(filepath.Join(root, "services", svc, "Dockerfile"))
		if err != nil {
			t.Errorf("%s: %v", svc, err)
			continue
		}
		df := string(b)
		froms := fromRE.FindAllStringSubmatch(df, -1)
		if len(froms) < 2 {
			t.Errorf("%s: %d stages, want a multi-stage build", svc, len(froms))
		}
		for _, f := range froms {
			if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(f[1]) {
				t.Errorf("%s: base %s is not pinned by digest", svc, f[1])
			}
		}
		if last := froms[len(froms)-1][1]; !strings.HasPrefix(last, "gcr.io/distroless/static-debian12:nonroot@") {
			t.Errorf("%s: runtime base %s, want distroless static nonroot", svc, last)
		}
		for _, want := range []string{"CGO_ENABLED=0", "GOARCH=amd64", "USER 65532:65532", "-o /out/" + svc + " ./services/" + svc, `ENTRYPOINT ["/` + svc + `"]`, "COPY go.work "} {
			if !strings.Contains(df, want) {
				t.Errorf("%s: Dockerfile lacks %q", svc, want)
			}
		}
		for _, m := range mods {
			if !strings.Contains(df, "COPY "+m+"/go.mod ") {
				t.Errorf("%s: go.work uses ./%s but the Dockerfile does not copy %s/go.mod", svc, m, m)
			}
		}
		// Every COPY source from the build context must exist (globs may match nothing).
		for _, line := range strings.Split(df, "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 || fields[0] != "COPY" || strings.HasPrefix(fields[1], "--from") {
				continue
			}
			for _, src := range fields[1 : len(fields)-1] {
				if strings.Contains(src, "*") {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s: COPY source %s does not exist in the repository", svc, src)
				}
			}
		}
	}
}

// Builds each service exactly as its Dockerfile does and checks the binary
// is static (it must run on distroless/static, which has no libc) and small
// enough for the image to stay under 25 MB.
func TestServiceBinariesAreStaticAndSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the five service binaries; -short runs only tests that build nothing")
	}
	root := repoRoot(t)
	out := t.TempDir()
	for _, svc := range stacks.Services {
		bin := filepath.Join(out, svc)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./services/"+svc)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-buildvcs=false")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s does not build as its Dockerfile builds it: %v\n%s", svc, err, b)
			continue
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Errorf("%s: %v", svc, err)
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked; distroless/static has no loader", svc)
			}
		}
		libs, _ := f.ImportedLibraries()
		if len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", svc, libs)
		}
		f.Close()
		st, _ := os.Stat(bin)
		pushed := gzipSize(t, bin)
		if pushed+distrolessBudget >= imageLimit {
			t.Errorf("%s binary is %d MB compressed: with the runtime base the image would exceed 25 MB", svc, pushed>>20)
		}
		t.Logf("%s: %.1f MB binary, %.1f MB compressed", svc, float64(st.Size())/(1<<20), float64(pushed)/(1<<20))
	}
}
