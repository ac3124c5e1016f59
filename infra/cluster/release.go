package cluster

// Release holds the sha256 checksums of one K3s release's downloads: the
// boot script refuses anything else.
type Release struct {
	InstallScript string // install.sh at the release tag
	Binary        string // the amd64 k3s binary
}

// K3sReleases pins the downloads of each K3s release the stacks may run.
// A release missing here is still installed, but its binary is checked
// only against the release's own sha256sum-amd64.txt and its install
// script not at all (cluster.NewCluster warns). It is empty because checksums
// must come from the downloads themselves, which this repository's build
// machine cannot reach; they are never copied from anywhere else. The
// commands that print an entry are in infra/OPERATIONS.md, "Pin a K3s
// release"; an entry looks like
//
//	"v1.36.4+k3s1": {InstallScript: "<64 hex>", Binary: "<64 hex>"},
var K3sReleases = map[string]Release{}

// Pinned reports whether version's downloads are pinned.
func Pinned(version string) bool {
	_, ok := K3sReleases[version]
	return ok
}
