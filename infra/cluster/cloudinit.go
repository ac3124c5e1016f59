package cluster

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Paths on the node.
const (
	TLSDir        = "/var/lib/rancher/k3s/server/tls" // K3s uses CA files found here instead of generating them
	K3sConfig     = "/etc/rancher/k3s/config.yaml"
	DataMount     = "/mnt/pressroom-data"     // the block storage volume
	StoragePath   = DataMount + "/local-path" // K3s local-path provisioner directory
	SnapshotDir   = DataMount + "/etcd-snapshots"
	DataLabel     = "pressroom.dev/data=true" // the node holding the volume
	PrivateNIC    = "eth1"                    // DigitalOcean's VPC interface
	metadataURL   = "http://169.254.169.254/metadata/v1/interfaces"
	PodCIDR       = "10.42.0.0/16" // K3s's default cluster-cidr
	MetadataGuard = "pressroom-metadata-guard.service"
	// K3sDropIn makes k3s.service wait for the data volume: fstab mounts it
	// with nofail (a missing volume must not stop the boot and SSH), so
	// nothing else would keep K3s, and Postgres with it, off the root disk.
	K3sDropIn = "/etc/systemd/system/k3s.service.d/10-pressroom-data.conf"
	// RestartTimer restarts K3s monthly: its leaf certificates last a year
	// and K3s renews the ones close to expiry only when it starts.
	RestartTimer   = "pressroom-k3s-restart.timer"
	restartService = "pressroom-k3s-restart.service"
	// InstalledStamp records the K3s release the script installed, so a
	// second run installs nothing.
	InstalledStamp = "/var/lib/pressroom/k3s-installed"
	K3sBinary      = "/usr/local/bin/k3s"
)

// metadataGuardRule keeps pods away from the droplet's metadata service,
// which serves this user-data (every CA key and the join token) for the
// droplet's whole life. pressroom's own pods are kept away by their
// NetworkPolicies; this covers every other namespace (Traefik, CoreDNS,
// cert-manager, the upgrade controller). The raw table sees a pod's packet
// before any filter rule K3s adds could accept it; the node itself still
// reads the metadata.
const metadataGuardRule = "PREROUTING -s " + PodCIDR + " -d 169.254.169.254/32 -j DROP"

// metadataGuardUnit applies the rule at every boot, before K3s starts.
const metadataGuardUnit = `[Unit]
Description=pressroom: pods may not read the droplet metadata (the user-data holds the cluster CAs and join token)
Before=k3s.service
After=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'iptables -t raw -C ` + metadataGuardRule + ` 2>/dev/null || iptables -t raw -I ` + metadataGuardRule + `'

[Install]
WantedBy=multi-user.target
`

// k3sDropInUnit: RequiresMountsFor adds Requires= and After= on the mount
// unit, so K3s never starts without the volume.
const k3sDropInUnit = `[Unit]
RequiresMountsFor=` + DataMount + `
`

const restartServiceUnit = `[Unit]
Description=pressroom: restart K3s so it renews certificates close to expiry

[Service]
Type=oneshot
ExecStart=/usr/bin/systemctl try-restart k3s.service
`

// restartTimerUnit restarts server i on day 1+7i of each month, so two
// servers of an HA cluster never restart together (etcd keeps quorum).
func restartTimerUnit(index int) string {
	return fmt.Sprintf(`[Unit]
Description=pressroom: monthly K3s restart (K3s renews certificates within 90 days of expiry at start)

[Timer]
OnCalendar=*-*-%02d 04:00:00 UTC
RandomizedDelaySec=30m
Persistent=true

[Install]
WantedBy=timers.target
`, 1+7*(index%4))
}

// NodeSpec is everything one server's first boot needs.
type NodeSpec struct {
	Index       int    // 0 = the first server
	K3sVersion  string // pinned, e.g. v1.36.4+k3s1
	Token       string // shared cluster secret
	TLSSANs     []string
	ClusterInit bool   // the first server: start embedded etcd
	JoinURL     string // joining servers: https://<first server's VPC address>:6443
	CAFiles     map[string]string
	VolumeName  string // the server holding the block storage volume mounted at DataMount
	// ExternalIP is the address the site's DNS gives for this server (the
	// reserved IP for the first one); "" = the droplet's own public address.
	// K3s's ServiceLB lists it in Traefik's LoadBalancer status, so
	// kube-proxy sends in-cluster requests to it straight to Traefik.
	ExternalIP string
}

// InstallScriptURL is the K3s install script of exactly that release.
func InstallScriptURL(version string) string {
	return "https://raw.githubusercontent.com/k3s-io/k3s/" + url.PathEscape(version) + "/install.sh"
}

// BinaryURL is the amd64 K3s binary of that release.
func BinaryURL(version string) string {
	return "https://github.com/k3s-io/k3s/releases/download/" + url.PathEscape(version) + "/k3s"
}

// ChecksumsURL is the release's own checksum list (used only for releases
// without pinned checksums).
func ChecksumsURL(version string) string {
	return "https://github.com/k3s-io/k3s/releases/download/" + url.PathEscape(version) + "/sha256sum-amd64.txt"
}

// K3sConfigYAML is /etc/rancher/k3s/config.yaml without the node addresses
// (they come from the metadata service at boot).
func K3sConfigYAML(n NodeSpec) (string, error) {
	cfg := map[string]any{
		"token":                 n.Token,
		"tls-san":               n.TLSSANs,
		"secrets-encryption":    true,
		"write-kubeconfig-mode": "0600",
		"flannel-iface":         PrivateNIC,
		// Every server: K3s rewrites the local-path config from the flags
		// of whichever server started last.
		"default-local-storage-path": StoragePath,
	}
	if n.ClusterInit {
		cfg["cluster-init"] = true
	}
	if n.JoinURL != "" {
		cfg["server"] = n.JoinURL
	}
	if n.VolumeName != "" {
		cfg["node-label"] = []string{DataLabel}
		// etcd snapshots outlive the droplet: a replaced server restores from them
		cfg["etcd-snapshot-dir"] = SnapshotDir
	}
	b, err := yaml.Marshal(cfg)
	return string(b), err
}

var (
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$`)
	ipv4RE    = regexp.MustCompile(`^[0-9]{1,3}(\.[0-9]{1,3}){3}$`)
)

// heredoc ends a file's content in the script; content never holds it.
const heredoc = "PRESSROOM_EOF"

// UserData renders one server's user data: a bash script cloud-init runs
// once as root. It writes the CA files and the K3s config before K3s first
// starts, mounts the volume, and installs the pinned K3s release after
// checking what it downloaded. PRESSROOM_ROOT (unset on a droplet) puts
// every path under a scratch directory for tests.
func UserData(n NodeSpec) (string, error) {
	if n.K3sVersion == "" || n.Token == "" {
		return "", fmt.Errorf("cluster: node %d needs a K3s version and a token", n.Index+1)
	}
	if !versionRE.MatchString(n.K3sVersion) {
		return "", fmt.Errorf("cluster: K3s version %q is not a release like v1.36.4+k3s1", n.K3sVersion)
	}
	if n.Index > 0 && n.JoinURL == "" {
		return "", fmt.Errorf("cluster: node %d joins the cluster and needs JoinURL", n.Index+1)
	}
	if n.ExternalIP != "" && !ipv4RE.MatchString(n.ExternalIP) {
		return "", fmt.Errorf("cluster: node %d external IP %q is not an IPv4 address", n.Index+1, n.ExternalIP)
	}
	k3s, err := K3sConfigYAML(n)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	file := func(mode, path, content string) error {
		if content != "" && !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		for _, line := range strings.Split(content, "\n") {
			if line == heredoc {
				return fmt.Errorf("cluster: %s holds the line %s", path, heredoc)
			}
		}
		w("put %s %s <<'%s'\n%s%s", mode, path, heredoc, content, heredoc)
		return nil
	}

	w("#!/bin/bash")
	w("# pressroom: first boot of server %d. Any failed step stops the script:", n.Index+1)
	w("# K3s is never installed without its CAs, its volume or a verified download.")
	w("set -euo pipefail")
	w("umask 022")
	w(`R="${PRESSROOM_ROOT:-}"`)
	w(`die() { echo "pressroom: $*" >&2; exit 1; }`)
	// put MODE PATH <stdin: written only when content or mode differ, so a
	// second run changes nothing.
	w(`put() {
	local mode=$1 path=$R$2 tmp
	mkdir -p "$(dirname "$path")"
	tmp=$(mktemp "$path.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	if [ -f "$path" ] && cmp -s "$tmp" "$path" && [ "$(stat -c %%a "$path")" = "${mode#0}" ]; then
		rm -f "$tmp"
	else
		mv -f "$tmp" "$path"
	fi
}`)

	paths := make([]string, 0, len(n.CAFiles))
	for p := range n.CAFiles {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		mode := "0644"
		if strings.HasSuffix(p, ".key") {
			mode = "0600"
		}
		if err := file(mode, TLSDir+"/"+p, n.CAFiles[p]); err != nil {
			return "", err
		}
	}
	if err := file("0644", "/etc/systemd/system/"+MetadataGuard, metadataGuardUnit); err != nil {
		return "", err
	}
	if err := file("0644", "/etc/systemd/system/"+restartService, restartServiceUnit); err != nil {
		return "", err
	}
	if err := file("0644", "/etc/systemd/system/"+RestartTimer, restartTimerUnit(n.Index)); err != nil {
		return "", err
	}
	if n.VolumeName != "" {
		if err := file("0644", K3sDropIn, k3sDropInUnit); err != nil {
			return "", err
		}
	}
	w("systemctl daemon-reload")
	// Before anything else, and before K3s can start a pod: the guard.
	w("systemctl enable --now %s || die 'the metadata guard (iptables) did not start; K3s is not installed without it'", MetadataGuard)

	if n.VolumeName != "" {
		dev := "/dev/disk/by-id/scsi-0DO_Volume_" + n.VolumeName
		// the volume is attached at creation; wait for the device, bounded
		w(`for i in $(seq 1 60); do [ -e "$R%s" ] && break; sleep 2; done`, dev)
		w(`[ -e "$R%s" ] || die 'volume %s never appeared'`, dev, n.VolumeName)
		w(`mkdir -p "$R%s"`, DataMount)
		w(`touch "$R/etc/fstab"`)
		w(`grep -qF '%s %s ' "$R/etc/fstab" || echo '%s %s ext4 defaults,nofail,discard,noatime 0 2' >>"$R/etc/fstab"`, dev, DataMount, dev, DataMount)
		w("systemctl daemon-reload")
		w(`mountpoint -q "$R%s" || mount "$R%s"`, DataMount, DataMount)
		w(`mountpoint -q "$R%s" || die 'the data volume is not mounted at %s'`, DataMount, DataMount)
	}
	w(`mkdir -p "$R%s"`, StoragePath)

	// Node addresses from the metadata service: cluster traffic stays in the VPC.
	w(`meta() { curl -sSf --retry 5 --max-time 10 "%s/$1/0/ipv4/address"; }`, metadataURL)
	w(`priv=$(meta private)`)
	if n.ExternalIP != "" {
		w(`ext=%s`, n.ExternalIP)
	} else {
		w(`ext=$(meta public)`)
	}
	w(`for ip in "$priv" "$ext"; do [[ $ip =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "metadata address '$ip' is not IPv4"; done`)
	w(`{ cat <<'%s'`, heredoc)
	b.WriteString(k3s)
	w(heredoc)
	// advertise-address: the API's in-cluster endpoint stays on the VPC,
	// never the external IP (the reserved IP is not on any interface).
	w(`printf 'node-ip: %%s\nadvertise-address: %%s\nnode-external-ip: %%s\n' "$priv" "$priv" "$ext"; } | put 0600 %s`, K3sConfig)

	rel, pinned := K3sReleases[n.K3sVersion]
	w(`version='%s'`, n.K3sVersion)
	w(`if [ "$(cat "$R%s" 2>/dev/null || true)" != "$version" ]; then`, InstalledStamp)
	w(`	dl=$(mktemp -d); trap 'rm -rf "$dl"' EXIT`)
	w(`	fetch() { curl -sSfL --retry 5 --max-time 300 -o "$dl/$1" "$2" || die "download of $2 failed"; }`)
	w(`	fetch install.sh '%s'`, InstallScriptURL(n.K3sVersion))
	w(`	fetch k3s '%s'`, BinaryURL(n.K3sVersion))
	if pinned {
		if !sha256RE.MatchString(rel.InstallScript) || !sha256RE.MatchString(rel.Binary) {
			return "", fmt.Errorf("cluster: the pinned checksums of K3s %s are not sha256 hex", n.K3sVersion)
		}
		w(`	printf '%%s  %%s\n' %s "$dl/install.sh" %s "$dl/k3s" | sha256sum -c --quiet - || die 'K3s %s does not match the checksums pinned in the program'`, rel.InstallScript, rel.Binary, n.K3sVersion)
	} else {
		// Not pinned yet: the binary is checked against the release's own list.
		w(`	fetch sha256sum-amd64.txt '%s'`, ChecksumsURL(n.K3sVersion))
		w(`	sum=$(awk '$2 == "k3s" { print $1 }' "$dl/sha256sum-amd64.txt")`)
		w(`	[[ $sum =~ ^[0-9a-f]{64}$ ]] || die 'the K3s checksum list names no k3s binary'`)
		w(`	printf '%%s  %%s\n' "$sum" "$dl/k3s" | sha256sum -c --quiet - || die 'the K3s binary does not match its release checksum'`)
	}
	w(`	mkdir -p "$R$(dirname %s)"`, K3sBinary)
	w(`	install -m 0755 "$dl/k3s" "$R%s"`, K3sBinary)
	// The installer writes k3s.service and starts it; the drop-in above
	// already makes that start wait for the volume.
	w(`	INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_VERSION="$version" INSTALL_K3S_EXEC=server sh "$dl/install.sh" || die 'the K3s installer failed'`)
	w(`	printf '%%s\n' "$version" | put 0644 %s`, InstalledStamp)
	w(`fi`)
	w("systemctl enable --now %s", RestartTimer)
	return b.String(), nil
}
