// Package nodeimages builds OCI images from host files without a daemon and
// imports them into containerd, so a single-node Kubernetes without any
// registry can run the platform's pods from images referenced by digest.
//
// Images are deterministic: fixed mtimes (the epoch), sorted entries, no
// host uids, created = epoch, linux/amd64. The same inputs give the same
// manifest digest, so pod specs can pin Name@Digest.
package nodeimages

import (
	"os"
)

// Image is one built image.
type Image struct {
	Name    string // repository without tag or digest, e.g. "pressroom.local/web"
	Tag     string // e.g. "v1.33.13" or a content-derived tag
	Digest  string // "sha256:<64 hex>" of the image manifest
	Archive string // OCI layout tar that `ctr images import` accepts
	Size    int64  // compressed: config + layers, as a registry would store it
}

// Ref is what pod specs use.
func (i Image) Ref() string { return i.Name + "@" + i.Digest }

// TagRef is the human-readable name.
func (i Image) TagRef() string { return i.Name + ":" + i.Tag }

// Spec describes an image made from host files (no base image).
type Spec struct {
	// Name must start with a registry host (contains "." or ":", or is
	// "localhost"): CRI normalises other names to docker.io/…, and the
	// record imported under the bare name would never match.
	Name, Tag    string // empty Tag: "sha256-<12 hex of the manifest digest>"
	Files        []File // one layer; a later File for the same path wins
	Entrypoint   []string
	Cmd          []string
	Env          []string
	User         string
	WorkingDir   string
	ExposedPorts []string // "8080/tcp"
	Labels       map[string]string
	StopSignal   string // CRI sends it on stop; "" is SIGTERM
}

// File is one entry of the layer. Parent directories are added (0755,
// root) when not listed.
type File struct {
	Path    string      // absolute path inside the image
	Source  string      // host file to copy (symlinks followed)
	Content []byte      // literal content when Source is ""
	Mode    os.FileMode // permissions plus os.ModeDir/ModeSymlink/ModeSetgid/ModeSticky…; 0: the source's, or 0644/0755
	Link    string      // symlink target (implies os.ModeSymlink)
	// Capabilities become the security.capability xattr that
	// `setcap <caps>=+ep` writes (a PAX SCHILY.xattr record).
	Capabilities []string
	UID, GID     int
}

// Dir is a directory entry.
func Dir(p string, mode os.FileMode, uid, gid int) File {
	return File{Path: p, Mode: os.ModeDir | mode, UID: uid, GID: gid}
}

// Symlink is a symbolic link entry.
func Symlink(p, target string) File {
	return File{Path: p, Link: target, Mode: os.ModeSymlink | 0o777}
}
