package cluster

import (
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"pressroom.dev/infra/cluster/boottest"
)

const (
	testVersion = "v1.36.4+k3s1"
	fakeBinary  = "\x7fELF k3s stand-in\n"
	privateIP   = "10.110.0.2"
	publicIP    = "203.0.113.11"
	volumeDev   = "/dev/disk/by-id/scsi-0DO_Volume_pressroom-prod-data"
)

// serve makes the stub curl answer like the metadata service and GitHub
// for version: the installer stand-in, the binary and the release's list.
func serve(n *boottest.Node, version, binary string) {
	n.Fixtures[metadataURL+"/private/0/ipv4/address"] = privateIP
	n.Fixtures[metadataURL+"/public/0/ipv4/address"] = publicIP
	n.Fixtures[InstallScriptURL(version)] = boottest.Installer
	n.Fixtures[BinaryURL(version)] = binary
	n.Fixtures[ChecksumsURL(version)] = strings.Repeat("0", 64) + "  k3s-airgap-images-amd64.tar.zst\n" +
		boottest.SHA256(fakeBinary) + "  k3s\n"
}

func firstServer() NodeSpec {
	return NodeSpec{
		Index: 0, K3sVersion: testVersion, Token: "tok", ClusterInit: true,
		TLSSANs:    []string{"198.51.100.7", "k8s.example.com"},
		CAFiles:    map[string]string{"server-ca.crt": "CERT\n", "server-ca.key": "KEY\n", "etcd/peer-ca.key": "PEER\n", "service.key": "SA\n"},
		VolumeName: "pressroom-prod-data",
		ExternalIP: "198.51.100.7",
	}
}

func mustUserData(t *testing.T, n NodeSpec) string {
	t.Helper()
	ud, err := UserData(n)
	if err != nil {
		t.Fatal(err)
	}
	return ud
}

func k3sConfig(t *testing.T, r boottest.Result) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(r.Files[K3sConfig].Content), &cfg); err != nil {
		t.Fatalf("%s: %v", K3sConfig, err)
	}
	return cfg
}

// The first server's boot, run for real: files with their modes, CAs where
// K3s looks, the volume mounted and K3s ordered after it, then K3s.
func TestBootScriptFirstServer(t *testing.T) {
	ud := mustUserData(t, firstServer())
	if !strings.HasPrefix(ud, "#!/bin/bash\n") || !strings.Contains(ud, "\nset -euo pipefail\n") {
		t.Fatalf("user data must be a bash script that fails on any error:\n%.200s", ud)
	}
	if regexp.MustCompile(`\|\s*(sh|bash)\b`).MatchString(ud) {
		t.Error("nothing downloaded is piped into a shell")
	}
	n := boottest.New(t)
	serve(n, testVersion, fakeBinary)
	n.Device(volumeDev)
	r := n.Run(ud)
	if r.Err != nil {
		t.Fatalf("boot failed: %v\n%s", r.Err, r.Stderr)
	}

	for path, want := range map[string]struct {
		content string
		mode    uint32
	}{
		TLSDir + "/server-ca.crt":    {"CERT\n", 0o644},
		TLSDir + "/server-ca.key":    {"KEY\n", 0o600},
		TLSDir + "/etcd/peer-ca.key": {"PEER\n", 0o600},
		TLSDir + "/service.key":      {"SA\n", 0o600},
		K3sBinary:                    {fakeBinary, 0o755},
		InstalledStamp:               {testVersion + "\n", 0o644},
	} {
		f, ok := r.Files[path]
		if !ok || f.Content != want.content || uint32(f.Mode) != want.mode {
			t.Errorf("%s: %q mode %o, want %q mode %o", path, f.Content, f.Mode, want.content, want.mode)
		}
	}
	if f := r.Files[K3sConfig]; f.Mode != 0o600 {
		t.Errorf("%s mode %o, want 600 (it holds the token)", K3sConfig, f.Mode)
	}
	cfg := k3sConfig(t, r)
	for k, want := range map[string]any{
		"token": "tok", "cluster-init": true, "secrets-encryption": true, "write-kubeconfig-mode": "0600",
		"default-local-storage-path": StoragePath, "etcd-snapshot-dir": SnapshotDir, "flannel-iface": PrivateNIC,
		"node-ip": privateIP, "advertise-address": privateIP, "node-external-ip": "198.51.100.7",
	} {
		if !reflect.DeepEqual(cfg[k], want) {
			t.Errorf("config %s = %v, want %v", k, cfg[k], want)
		}
	}
	if cfg["server"] != nil || !reflect.DeepEqual(cfg["node-label"], []any{DataLabel}) || cfg["disable"] != nil {
		t.Errorf("config %v", cfg)
	}
	if sans, _ := cfg["tls-san"].([]any); len(sans) != 2 || sans[0] != "198.51.100.7" || sans[1] != "k8s.example.com" {
		t.Errorf("tls-san %v", cfg["tls-san"])
	}

	// The mount is ordered before K3s twice over: mounted before the
	// installer starts K3s, and k3s.service requires the mount at every boot.
	if got := r.Files[K3sDropIn].Content; !strings.Contains(got, "RequiresMountsFor="+DataMount+"\n") {
		t.Errorf("drop-in %q", got)
	}
	fstab := r.Files["/etc/fstab"].Content
	if strings.Count(fstab, DataMount) != 1 || !strings.Contains(fstab, volumeDev+" "+DataMount+" ext4 defaults,nofail") {
		t.Errorf("fstab %q", fstab)
	}
	guard, mount, install := r.Index("systemctl enable --now "+MetadataGuard), r.Index("mount "), r.Index("installer ")
	if guard < 0 || mount < 0 || install < 0 || !(guard < mount && mount < install) {
		t.Fatalf("want guard, then mount, then installer; calls:\n%s", strings.Join(r.Calls, "\n"))
	}
	if c := r.Calls[install]; c != "installer skip=true version="+testVersion+" exec=server with: dropin binary mounted" {
		t.Errorf("installer call %q", c)
	}
	if r.Index("systemctl enable --now "+RestartTimer) < 0 || !strings.Contains(r.Files["/etc/systemd/system/"+RestartTimer].Content, "OnCalendar=*-*-01 04:00:00 UTC") {
		t.Error("the monthly K3s restart timer is not enabled")
	}
	if f := r.Files["/etc/systemd/system/"+restartService].Content; !strings.Contains(f, "systemctl try-restart k3s.service") {
		t.Errorf("restart service %q", f)
	}
	unit := r.Files["/etc/systemd/system/"+MetadataGuard].Content
	for _, want := range []string{"Before=k3s.service", "WantedBy=multi-user.target",
		"iptables -t raw -C PREROUTING -s 10.42.0.0/16 -d 169.254.169.254/32 -j DROP",
		"|| iptables -t raw -I PREROUTING -s 10.42.0.0/16 -d 169.254.169.254/32 -j DROP"} {
		if !strings.Contains(unit, want) {
			t.Errorf("metadata guard unit lacks %q", want)
		}
	}
	for _, c := range r.Calls {
		if strings.HasPrefix(c, "sleep") {
			t.Errorf("waited for a volume that was there: %s", c)
		}
	}

	// A second run changes nothing and installs nothing.
	again := n.Run(ud)
	if again.Err != nil {
		t.Fatalf("second run failed: %v\n%s", again.Err, again.Stderr)
	}
	if !reflect.DeepEqual(again.Files, r.Files) {
		for _, p := range again.Paths() {
			if again.Files[p] != r.Files[p] {
				t.Errorf("second run changed %s", p)
			}
		}
		t.Errorf("second run changed the node: %v vs %v", again.Paths(), r.Paths())
	}
	if again.Index("installer") >= 0 || again.Index("curl "+BinaryURL(testVersion)) >= 0 {
		t.Errorf("second run downloaded or installed K3s again:\n%s", strings.Join(again.Calls, "\n"))
	}
}

func TestBootScriptJoiningServer(t *testing.T) {
	ud := mustUserData(t, NodeSpec{Index: 2, K3sVersion: testVersion, Token: "tok", JoinURL: "https://10.110.0.2:6443",
		TLSSANs: []string{"198.51.100.7"}, CAFiles: map[string]string{"client-ca.crt": "C\n"}})
	n := boottest.New(t)
	serve(n, testVersion, fakeBinary)
	r := n.Run(ud)
	if r.Err != nil {
		t.Fatalf("boot failed: %v\n%s", r.Err, r.Stderr)
	}
	cfg := k3sConfig(t, r)
	if cfg["server"] != "https://10.110.0.2:6443" || cfg["cluster-init"] != nil || cfg["token"] != "tok" {
		t.Errorf("join config %v", cfg)
	}
	// Every server names the same storage path (K3s rewrites the
	// local-path config from the last server to start); only the volume
	// holder carries the data label and mounts the volume.
	if cfg["default-local-storage-path"] != StoragePath || cfg["node-label"] != nil || cfg["etcd-snapshot-dir"] != nil {
		t.Errorf("join config %v", cfg)
	}
	if cfg["node-external-ip"] != publicIP || cfg["node-ip"] != privateIP {
		t.Errorf("addresses: external %v internal %v", cfg["node-external-ip"], cfg["node-ip"])
	}
	if _, ok := r.Files[K3sDropIn]; ok || r.Index("mount") >= 0 || strings.Contains(r.Files["/etc/fstab"].Content, "DO_Volume") {
		t.Error("only the volume holder mounts the volume")
	}
	if r.Files[TLSDir+"/client-ca.crt"].Content != "C\n" || r.Index("systemctl enable --now "+MetadataGuard) < 0 {
		t.Error("joining servers carry the shared CAs, so they get the metadata guard")
	}
	if !strings.Contains(r.Files["/etc/systemd/system/"+RestartTimer].Content, "OnCalendar=*-*-15 04:00:00 UTC") {
		t.Error("server 3 restarts on another day than servers 1 and 2")
	}
}

// A failed download fails the boot before anything is installed.
func TestBootScriptFailsOnFailedDownload(t *testing.T) {
	for _, missing := range []string{InstallScriptURL(testVersion), BinaryURL(testVersion), ChecksumsURL(testVersion), metadataURL + "/private/0/ipv4/address"} {
		n := boottest.New(t)
		serve(n, testVersion, fakeBinary)
		delete(n.Fixtures, missing)
		n.Device(volumeDev)
		r := n.Run(mustUserData(t, firstServer()))
		if r.Err == nil {
			t.Errorf("without %s the boot succeeded", missing)
		}
		if r.Index("installer") >= 0 || r.Files[InstalledStamp].Content != "" || r.Files[K3sBinary].Content != "" {
			t.Errorf("without %s K3s was installed:\n%s", missing, strings.Join(r.Calls, "\n"))
		}
	}
}

// What was downloaded is checked before it runs: against the release's list
// when the release is not pinned, against the program's checksums when it is.
func TestBootScriptVerifiesDownloads(t *testing.T) {
	n := boottest.New(t)
	serve(n, testVersion, "tampered binary\n")
	n.Device(volumeDev)
	r := n.Run(mustUserData(t, firstServer()))
	if r.Err == nil || r.Index("installer") >= 0 || !strings.Contains(r.Stderr, "does not match its release checksum") {
		t.Errorf("a binary unlike the release's checksum was installed (err %v):\n%s", r.Err, r.Stderr)
	}

	const pinned = "v1.99.1+k3s1"
	K3sReleases[pinned] = Release{InstallScript: boottest.SHA256(boottest.Installer), Binary: boottest.SHA256(fakeBinary)}
	t.Cleanup(func() { delete(K3sReleases, pinned) })
	spec := firstServer()
	spec.K3sVersion = pinned
	ud := mustUserData(t, spec)

	n = boottest.New(t)
	serve(n, pinned, fakeBinary)
	delete(n.Fixtures, ChecksumsURL(pinned)) // a pinned release needs no list
	n.Device(volumeDev)
	if r := n.Run(ud); r.Err != nil || r.Index("installer") < 0 {
		t.Fatalf("pinned release did not install: %v\n%s", r.Err, r.Stderr)
	}

	for url, body := range map[string]string{BinaryURL(pinned): "tampered binary\n", InstallScriptURL(pinned): boottest.Installer + "# changed\n"} {
		n = boottest.New(t)
		serve(n, pinned, fakeBinary)
		n.Fixtures[url] = body
		// the release's own list agrees with the tampered file: only the pin can catch it
		n.Fixtures[ChecksumsURL(pinned)] = boottest.SHA256(body) + "  k3s\n"
		n.Device(volumeDev)
		r := n.Run(ud)
		if r.Err == nil || r.Index("installer") >= 0 || !strings.Contains(r.Stderr, "does not match the checksums pinned in the program") {
			t.Errorf("%s changed and still installed (err %v):\n%s", url, r.Err, r.Stderr)
		}
	}
}

// A volume that never appears stops the boot: K3s would otherwise put
// Postgres on the root disk.
func TestBootScriptStopsWithoutTheVolume(t *testing.T) {
	n := boottest.New(t)
	serve(n, testVersion, fakeBinary)
	r := n.Run(mustUserData(t, firstServer()))
	if r.Err == nil || !strings.Contains(r.Stderr, "volume pressroom-prod-data never appeared") {
		t.Errorf("boot without the volume: %v\n%s", r.Err, r.Stderr)
	}
	if r.Index("installer") >= 0 || r.Index("sleep") < 0 {
		t.Errorf("calls:\n%s", strings.Join(r.Calls, "\n"))
	}
}

func TestUserDataRefusesIncompleteSpecs(t *testing.T) {
	if _, err := UserData(NodeSpec{Index: 1, K3sVersion: testVersion, Token: "t"}); err == nil || !strings.Contains(err.Error(), "JoinURL") {
		t.Errorf("joiner without JoinURL: %v", err)
	}
	if _, err := UserData(NodeSpec{K3sVersion: testVersion}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("no token: %v", err)
	}
	if _, err := UserData(NodeSpec{K3sVersion: "v1.36.4+k3s1'; reboot; '", Token: "t"}); err == nil {
		t.Error("a version that breaks out of the script's quotes was accepted")
	}
	if _, err := UserData(NodeSpec{K3sVersion: testVersion, Token: "t", CAFiles: map[string]string{"x.crt": "a\n" + heredoc + "\nb"}}); err == nil {
		t.Error("a file holding the heredoc terminator was accepted")
	}
}
