package cluster

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// CloudInit is the parsed shape UserData produces.
type cloudInit struct {
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
	RunCmd []string `yaml:"runcmd"`
}

func parseUserData(t *testing.T, s string) (files map[string]string, perms map[string]string, k3s map[string]any) {
	t.Helper()
	if !strings.HasPrefix(s, "#cloud-config\n") {
		t.Fatalf("user data must start with #cloud-config, got %.40q", s)
	}
	var ci cloudInit
	if err := yaml.Unmarshal([]byte(s), &ci); err != nil {
		t.Fatal(err)
	}
	files, perms = map[string]string{}, map[string]string{}
	for _, f := range ci.WriteFiles {
		files[f.Path], perms[f.Path] = f.Content, f.Permissions
	}
	if err := yaml.Unmarshal([]byte(files[K3sConfig]), &k3s); err != nil {
		t.Fatal(err)
	}
	if len(ci.RunCmd) != 1 || ci.RunCmd[0] != BootstrapScript {
		t.Fatalf("runcmd = %v", ci.RunCmd)
	}
	return files, perms, k3s
}

func TestUserDataFirstServerOfHA(t *testing.T) {
	ud, err := UserData(NodeSpec{
		Index: 0, K3sVersion: "v1.31.4+k3s1", Token: "tok", ClusterInit: true,
		TLSSANs:    []string{"198.51.100.7", "k8s.example.com"},
		CAFiles:    map[string]string{"server-ca.crt": "CERT", "server-ca.key": "KEY", "etcd/peer-ca.key": "PEER"},
		VolumeName: "pressroom-prod-data",
	})
	if err != nil {
		t.Fatal(err)
	}
	files, perms, k3s := parseUserData(t, ud)
	if files[TLSDir+"/server-ca.crt"] != "CERT" || perms[TLSDir+"/server-ca.crt"] != "0644" {
		t.Errorf("server CA file: %q %q", files[TLSDir+"/server-ca.crt"], perms[TLSDir+"/server-ca.crt"])
	}
	for _, k := range []string{TLSDir + "/server-ca.key", TLSDir + "/etcd/peer-ca.key", K3sConfig} {
		if perms[k] != "0600" {
			t.Errorf("%s permissions %q, want 0600", k, perms[k])
		}
	}
	if k3s["cluster-init"] != true || k3s["server"] != nil || k3s["token"] != "tok" {
		t.Errorf("k3s config %v", k3s)
	}
	if k3s["secrets-encryption"] != true || k3s["write-kubeconfig-mode"] != "0600" || k3s["default-local-storage-path"] != StoragePath {
		t.Errorf("k3s config %v", k3s)
	}
	if _, disabled := k3s["disable"]; disabled {
		t.Error("traefik must be kept")
	}
	if sans, _ := k3s["tls-san"].([]any); len(sans) != 2 || sans[0] != "198.51.100.7" || sans[1] != "k8s.example.com" {
		t.Errorf("tls-san %v", k3s["tls-san"])
	}
	script := files[BootstrapScript]
	for _, want := range []string{
		"set -eu",
		"/dev/disk/by-id/scsi-0DO_Volume_pressroom-prod-data",
		"INSTALL_K3S_VERSION='v1.31.4+k3s1'",
		"https://raw.githubusercontent.com/k3s-io/k3s/v1.31.4+k3s1/install.sh",
		"node-ip",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("bootstrap script lacks %q:\n%s", want, script)
		}
	}
	if strings.Index(script, "mount -a") > strings.Index(script, "INSTALL_K3S_VERSION") {
		t.Error("the volume must be mounted before K3s is installed")
	}
	// Pods never reach the metadata service that serves this document (CA
	// keys, token): the guard's unit runs before K3s, at every boot.
	unit := files["/etc/systemd/system/"+MetadataGuard]
	for _, want := range []string{"Before=k3s.service", "WantedBy=multi-user.target",
		"iptables -t raw -C PREROUTING -s 10.42.0.0/16 -d 169.254.169.254/32 -j DROP",
		"|| iptables -t raw -I PREROUTING -s 10.42.0.0/16 -d 169.254.169.254/32 -j DROP"} {
		if !strings.Contains(unit, want) {
			t.Errorf("metadata guard unit lacks %q:\n%s", want, unit)
		}
	}
	if g, k := strings.Index(script, "systemctl enable --now "+MetadataGuard), strings.Index(script, "INSTALL_K3S_VERSION"); g < 0 || g > k {
		t.Errorf("the metadata guard must be enabled before K3s is installed:\n%s", script)
	}
}

func TestUserDataJoiningServer(t *testing.T) {
	ud, err := UserData(NodeSpec{Index: 2, K3sVersion: "v1.31.4+k3s1", Token: "tok", JoinURL: "https://10.110.0.2:6443",
		TLSSANs: []string{"198.51.100.7"}, CAFiles: map[string]string{"client-ca.crt": "C"}})
	if err != nil {
		t.Fatal(err)
	}
	files, _, k3s := parseUserData(t, ud)
	if k3s["server"] != "https://10.110.0.2:6443" || k3s["cluster-init"] != nil || k3s["token"] != "tok" {
		t.Errorf("join config %v", k3s)
	}
	if strings.Contains(files[BootstrapScript], "DO_Volume") || k3s["default-local-storage-path"] != nil {
		t.Error("only the first server mounts the data volume")
	}
	if files[TLSDir+"/client-ca.crt"] != "C" {
		t.Error("joining servers carry the shared CAs")
	}
	if files["/etc/systemd/system/"+MetadataGuard] == "" || !strings.Contains(files[BootstrapScript], "systemctl enable --now "+MetadataGuard) {
		t.Error("joining servers carry the CAs too, so they get the metadata guard")
	}
}

func TestUserDataRefusesIncompleteSpecs(t *testing.T) {
	if _, err := UserData(NodeSpec{Index: 1, K3sVersion: "v1.31.4+k3s1", Token: "t"}); err == nil || !strings.Contains(err.Error(), "JoinURL") {
		t.Errorf("joiner without JoinURL: %v", err)
	}
	if _, err := UserData(NodeSpec{K3sVersion: "v1.31.4+k3s1"}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("no token: %v", err)
	}
}
