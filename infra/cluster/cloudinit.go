package cluster

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Paths on the node.
const (
	TLSDir          = "/var/lib/rancher/k3s/server/tls" // K3s uses CA files found here instead of generating them
	K3sConfig       = "/etc/rancher/k3s/config.yaml"
	DataMount       = "/mnt/pressroom-data"     // the block storage volume
	StoragePath     = DataMount + "/local-path" // K3s local-path provisioner directory
	DataLabel       = "pressroom.dev/data=true" // the node holding the volume
	PrivateNIC      = "eth1"
	BootstrapScript = "/usr/local/sbin/pressroom-bootstrap" // DigitalOcean's VPC interface
	metadataURL     = "http://169.254.169.254/metadata/v1/interfaces"
	PodCIDR         = "10.42.0.0/16" // K3s's default cluster-cidr
	MetadataGuard   = "pressroom-metadata-guard.service"
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

// NodeSpec is everything one server's first boot needs.
type NodeSpec struct {
	Index       int    // 0 = the first server
	K3sVersion  string // pinned, e.g. v1.31.4+k3s1
	Token       string // shared cluster secret
	TLSSANs     []string
	ClusterInit bool   // first server of an HA cluster: start embedded etcd
	JoinURL     string // joining servers: https://<first server's VPC address>:6443
	CAFiles     map[string]string
	VolumeName  string // first server: the block storage volume mounted at DataMount
}

// InstallScriptURL is the K3s install script of exactly that release.
func InstallScriptURL(version string) string {
	return "https://raw.githubusercontent.com/k3s-io/k3s/" + url.PathEscape(version) + "/install.sh"
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
	}
	if n.ClusterInit {
		cfg["cluster-init"] = true
	}
	if n.JoinURL != "" {
		cfg["server"] = n.JoinURL
	}
	if n.VolumeName != "" {
		cfg["default-local-storage-path"] = StoragePath
		cfg["node-label"] = []string{DataLabel}
	}
	b, err := yaml.Marshal(cfg)
	return string(b), err
}

// UserData renders the cloud-init document of one server: CA files and the
// K3s config are written before K3s first starts, the volume is mounted, and
// the pinned K3s release is installed. No SSH from Pulumi is needed.
func UserData(n NodeSpec) (string, error) {
	if n.K3sVersion == "" || n.Token == "" {
		return "", fmt.Errorf("cluster: node %d needs a K3s version and a token", n.Index+1)
	}
	if n.Index > 0 && n.JoinURL == "" {
		return "", fmt.Errorf("cluster: node %d joins the cluster and needs JoinURL", n.Index+1)
	}
	k3s, err := K3sConfigYAML(n)
	if err != nil {
		return "", err
	}
	type file struct {
		Path        string `yaml:"path"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	}
	var files []file
	paths := make([]string, 0, len(n.CAFiles))
	for p := range n.CAFiles {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		perm := "0644"
		if strings.HasSuffix(p, ".key") {
			perm = "0600"
		}
		files = append(files, file{Path: TLSDir + "/" + p, Permissions: perm, Content: n.CAFiles[p]})
	}
	files = append(files, file{Path: K3sConfig, Permissions: "0600", Content: k3s})
	files = append(files, file{Path: "/etc/systemd/system/" + MetadataGuard, Permissions: "0644", Content: metadataGuardUnit})

	// Before anything else, and before K3s can start a pod: the guard.
	run := []string{fmt.Sprintf("systemctl enable --now %s || { echo 'pressroom: the metadata guard (iptables) did not start; K3s is not installed without it' >&2; exit 1; }", MetadataGuard)}
	if n.VolumeName != "" {
		dev := "/dev/disk/by-id/scsi-0DO_Volume_" + n.VolumeName
		run = append(run,
			// the volume is attached at creation; wait for the device, bounded
			fmt.Sprintf("for i in $(seq 1 60); do [ -e %s ] && break; sleep 2; done; [ -e %s ] || { echo 'pressroom: volume %s never appeared' >&2; exit 1; }", dev, dev, n.VolumeName),
			fmt.Sprintf("mkdir -p %s; grep -q '%s' /etc/fstab || echo '%s %s ext4 defaults,nofail,discard,noatime 0 2' >> /etc/fstab", DataMount, dev, dev, DataMount),
			"mount -a && mkdir -p "+StoragePath,
		)
	}
	run = append(run,
		// node addresses from the metadata service: cluster traffic stays in the VPC
		fmt.Sprintf(`printf 'node-ip: %%s\nnode-external-ip: %%s\n' "$(curl -sf %s/private/0/ipv4/address)" "$(curl -sf %s/public/0/ipv4/address)" >> %s`, metadataURL, metadataURL, K3sConfig),
		fmt.Sprintf("curl -sfL %s | INSTALL_K3S_VERSION='%s' INSTALL_K3S_EXEC='server' sh -", InstallScriptURL(n.K3sVersion), n.K3sVersion),
	)
	// One script with set -eu: a failed step stops the bootstrap instead of
	// installing K3s onto the wrong disk.
	files = append(files, file{Path: BootstrapScript, Permissions: "0700",
		Content: "#!/bin/sh\nset -eu\n" + strings.Join(run, "\n") + "\n"})
	doc := map[string]any{
		"write_files": files,
		"runcmd":      []string{BootstrapScript},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	return "#cloud-config\n" + string(b), nil
}
