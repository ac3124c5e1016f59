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
// script not at all (cluster.New warns). To pin one, on a trusted machine:
//
//	V=v1.31.4+k3s1
//	curl -sfL "https://raw.githubusercontent.com/k3s-io/k3s/${V/+/%2B}/install.sh" | sha256sum
//	curl -sfL "https://github.com/k3s-io/k3s/releases/download/${V/+/%2B}/sha256sum-amd64.txt" | awk '$2 == "k3s"'
//
// and compare the binary's line with the release page before adding it.
var K3sReleases = map[string]Release{}

// Pinned reports whether version's downloads are pinned.
func Pinned(version string) bool {
	_, ok := K3sReleases[version]
	return ok
}
