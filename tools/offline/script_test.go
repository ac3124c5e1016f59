package offline

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Bad arguments to tools/pulumi.sh fail at once, before any build, with a
// message that says what to fix.
func TestPulumiShRejectsBadArguments(t *testing.T) {
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: tools/pulumi.sh"},
		{[]string{"rollback", "-s", "prod", "--to", "twelve"}, "--to must be an update number"},
		{[]string{"rollback", "-s", "prod"}, "--to must be an update number"},
		{[]string{"rollback", "--to", "3"}, "name the stack: -s STACK"},
		{[]string{"rollback", "-s", "prod", "--to"}, "--to needs an update number"},
		{[]string{"manifests", "-s", "prod", "--bogus"}, "unknown argument '--bogus'"},
		{[]string{"manifests"}, "name the stack"},
	} {
		cmd := exec.Command(filepath.Join(repo, "tools", "pulumi.sh"), tc.args...)
		cmd.Env = append(cmd.Environ(), "PRESSROOM_CACHE="+t.TempDir()) // would fail loudly if it tried to build
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("pulumi.sh %q: err=%v, output %q; want an error containing %q", tc.args, err, out, tc.want)
		}
	}
}
