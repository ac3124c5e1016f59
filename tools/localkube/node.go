package localkube

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"pressroom.dev/tools/nodeimages"
	"pressroom.dev/tools/toolchain"
)

//go:embed addons/*.yaml
var addons embed.FS

// node is what a real node adds to the control plane.
type node struct {
	net    slotNet
	lock   *slotLock
	holder *proc // owns the node's network and mount namespaces
	inet   *proc // owns the internet namespace
	cg     *cgroups
	sock   string // containerd's socket
	kube   toolchain.Kube
	parts  toolchain.NodeParts
	images map[string]nodeimages.Image
	hosts  string // the internet DNS answerer's hosts file

	bgCancel context.CancelFunc
	bgDone   chan struct{}
	bgErr    error
}

// StoragePath is where local-path keeps volumes on the node, as on K3s.
const StoragePath = "/var/lib/rancher/k3s/storage"

// paths the node's private mount namespace covers with its own directories,
// so nothing it writes there touches the machine: the K3s layout.
var nodeMounts = []struct{ target, source string }{
	{"/var/lib/kubelet", "kubelet"},
	{"/var/lib/containerd", "containerd"},
	{"/var/lib/cni", "cni-state"},
	{StoragePath, "storage"},
	{"/var/log/pods", "log/pods"},
	{"/var/log/containers", "log/containers"},
}

// covered are the host directories the node's mount namespace replaces
// with empty ones; the state directory must not live below them.
var covered = []string{"/run", "/var/lib", "/var/log"}

func checkNodeHost(dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("localkube: a node needs root (network namespaces, mounts, cgroups, iptables)")
	}
	var missing []string
	for _, c := range []string{"ip", "nsenter", "unshare", "mount", "sysctl", "containerd", "containerd-shim-runc-v2", "runc", "iptables", "ip6tables", "ipset", "conntrack", "ctr"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback", "bandwidth"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			missing = append(missing, cniBin+"/"+p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("localkube: a node needs %s; run 'make deps' (Debian: iproute2 util-linux containerd runc iptables ipset conntrack containernetworking-plugins)", strings.Join(missing, ", "))
	}
	for _, c := range covered {
		if dir == c || strings.HasPrefix(dir, c+"/") {
			return fmt.Errorf("localkube: state directory %s is below %s, which the node's mount namespace replaces; choose another (e.g. ~/.local/state/pressroom/node)", dir, c)
		}
	}
	return nil
}

// cniBin is Debian's containernetworking-plugins directory.
const cniBin = "/usr/lib/cni"

// startNode runs everything of the node after the directories exist.
func (c *Cluster) startNode(ctx context.Context, o Options) error {
	n := &node{kube: o.Kube, parts: o.NodeParts}
	c.node = n
	lock, err := lockSlot(o.Slot)
	if err != nil {
		return err
	}
	n.lock = lock
	n.net = netFor(lock.slot)
	c.NodeIP = n.net.nodeIP
	fmt.Fprintf(c.log, "localkube: node slot %d, address %s (public %s)\n", lock.slot, c.NodeIP, PublicIP)

	// A run of this slot that died without Stop left these.
	removeLinks(ctx, n.net)
	n.cg = newCgroups(lock.slot)
	if err := n.cg.clean(c.log); err != nil {
		return err
	}
	if err := n.cg.create(); err != nil {
		return err
	}
	if err := restoreSysctls(lock.slot); err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Join(c.Dir, "pki"), 0o700); err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	p, err := writePKI(filepath.Join(c.Dir, "pki"), NodeName, []net.IP{net.ParseIP(n.net.nodeIP), net.ParseIP(PublicIP)})
	if err != nil {
		return err
	}
	c.pki = p
	t0 := time.Now()
	if n.images, err = buildNodeImages(ctx, o.Kube, o.NodeParts, filepath.Join(c.cacheDir(), "node-images"), c.log); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: node images ready (%s)\n", time.Since(t0).Round(time.Millisecond))

	if n.holder, err = c.spawnArgv("node-namespaces", "unshare", "--net", "--mount", "--propagation", "private", "--", "sleep", "infinity"); err != nil {
		return err
	}
	if n.inet, err = c.spawnArgv("internet-namespace", "unshare", "--net", "--", "sleep", "infinity"); err != nil {
		return err
	}
	if err := waitNamespaces(ctx, n.holder, n.inet); err != nil {
		return err
	}
	if err := wireNetworks(ctx, n.net, n.holder.pid(), n.inet.pid()); err != nil {
		return err
	}
	if err := c.mountNodeDirs(ctx); err != nil {
		return err
	}
	if err := c.startInternetDNS(ctx); err != nil {
		return err
	}
	if err := c.startNodeControlPlane(ctx, o); err != nil {
		return err
	}
	if err := c.applyAddons(ctx, "core.yaml", "traefik.yaml"); err != nil {
		return err
	}
	if err := c.startRuntime(ctx, o); err != nil {
		return err
	}
	if err := c.startKubelet(ctx, o); err != nil {
		return err
	}
	if err := c.startNetworking(ctx); err != nil {
		return err
	}
	c.startBackground(o)
	if err := c.waitAddons(ctx, o.StartTimeout); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: node ready in %s\n", time.Since(t0).Round(time.Millisecond))
	return nil
}

// cacheDir keeps what outlives one cluster (built images).
func (c *Cluster) cacheDir() string {
	if d := os.Getenv("PRESSROOM_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "pressroom")
}

func waitNamespaces(ctx context.Context, procs ...*proc) error {
	for _, p := range procs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			// unshare has exec'd sleep once the namespace link differs from ours.
			mine, _ := os.Readlink("/proc/self/ns/net")
			theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.pid()))
			if err == nil && theirs != mine {
				break
			}
			select {
			case <-p.done:
				return fmt.Errorf("localkube: %s exited: %v\n%s", p.name, p.err, tailFile(p.log, 10))
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("localkube: %s made no namespace in 10s", p.name)
			}
		}
	}
	return nil
}

// mountNodeDirs gives the node's mount namespace its own /run, /var/lib and
// /var/log and binds the state directory's parts over the K3s paths.
func (c *Cluster) mountNodeDirs(ctx context.Context) error {
	n := c.node
	var script strings.Builder
	script.WriteString("set -e\n")
	for _, d := range covered {
		fmt.Fprintf(&script, "mount -t tmpfs -o mode=0755 pressroom-node %s\n", d)
	}
	for _, m := range nodeMounts {
		src := filepath.Join(c.Dir, m.source)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return fmt.Errorf("localkube: %w", err)
		}
		fmt.Fprintf(&script, "mkdir -p %s && mount --bind %s %s\n", m.target, src, m.target)
	}
	resolv := filepath.Join(c.Dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+InternetDNS+"\n"), 0o644); err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	fmt.Fprintf(&script, "mount --bind %s /etc/resolv.conf\n", resolv)
	return run(ctx, nsenter(n.holder.pid(), true, "sh", "-c", script.String())...)
}

// startNodeControlPlane starts etcd, the API server, the controller manager
// and the scheduler inside the node, with K3s' address ranges.
func (c *Cluster) startNodeControlPlane(ctx context.Context, o Options) error {
	n, p := c.node, c.pki
	c.EtcdURL = "http://127.0.0.1:2379"
	c.Server = "https://" + n.net.nodeIP + ":6443"
	local := "https://127.0.0.1:6443"
	for _, d := range []string{"etcd", "apiserver-certs", "controller-manager-certs", "scheduler-certs", "kubeconfigs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return fmt.Errorf("localkube: %w", err)
		}
	}
	t0 := time.Now()
	etcd, err := c.spawnNode("etcd", o.Kube.Etcd,
		"--name=localkube", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+c.EtcdURL, "--advertise-client-urls="+c.EtcdURL,
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=localkube=http://127.0.0.1:2380", "--log-level=warn")
	if err != nil {
		return err
	}
	cert := func(name string) (string, string) { return p.pair(name) }
	apiCert, apiKey := cert("apiserver")
	kcCert, kcKey := cert("apiserver-kubelet-client")
	fpCert, fpKey := cert("front-proxy-client")
	api, err := c.spawnNode("kube-apiserver", o.Kube.APIServer(),
		"--advertise-address="+n.net.nodeIP, "--bind-address=0.0.0.0", "--secure-port=6443",
		"--etcd-servers="+c.EtcdURL,
		"--service-cluster-ip-range="+ServiceCIDR, "--service-node-port-range=30000-32767",
		"--allow-privileged=true", "--anonymous-auth=false",
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file="+apiCert, "--tls-private-key-file="+apiKey,
		"--client-ca-file="+p.CA,
		"--kubelet-client-certificate="+kcCert, "--kubelet-client-key="+kcKey,
		"--kubelet-certificate-authority="+p.CA,
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--proxy-client-cert-file="+fpCert, "--proxy-client-key-file="+fpKey,
		"--requestheader-client-ca-file="+p.FrontCA, "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User", "--enable-aggregator-routing=true",
		"--service-account-issuer=https://kubernetes.default.svc."+ClusterDomain,
		"--service-account-key-file="+p.SAPub, "--service-account-signing-key-file="+p.SAKey,
		"--profiling=false")
	if err != nil {
		return err
	}
	client, err := c.HTTPClient()
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, api, o.StartTimeout, func() error {
		select {
		case <-etcd.done:
			return fmt.Errorf("etcd exited (%v):\n%s", etcd.err, tailFile(etcd.log, 15))
		default:
		}
		return c.get(client, c.Server+"/readyz", "ok")
	}); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: kube-apiserver ready on %s (%s)\n", c.Server, time.Since(t0).Round(time.Millisecond))
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, p.caPEM, p.adminPEM, p.adminKey, "localkube-admin"); err != nil {
		return err
	}
	for _, id := range []string{"controller-manager", "scheduler", "kubelet", "kube-proxy", "kube-router"} {
		cp, kp := p.pair(id)
		cb, err1 := os.ReadFile(cp)
		kb, err2 := os.ReadFile(kp)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("localkube: %w", err)
		}
		if err := writeKubeconfig(c.kubeconfigOf(id), local, p.caPEM, cb, kb, id); err != nil {
			return err
		}
	}
	cmKC := c.kubeconfigOf("controller-manager")
	if _, err := c.spawnNode("kube-controller-manager", o.Kube.ControllerManager(),
		"--kubeconfig="+cmKC, "--authentication-kubeconfig="+cmKC, "--authorization-kubeconfig="+cmKC,
		"--bind-address=127.0.0.1", "--secure-port=10257",
		"--cert-dir="+filepath.Join(c.Dir, "controller-manager-certs"),
		"--allocate-node-cidrs=true", "--cluster-cidr="+PodCIDR, "--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--service-account-private-key-file="+p.SAKey, "--root-ca-file="+p.CA,
		"--cluster-signing-cert-file="+p.CA, "--cluster-signing-key-file="+p.CAKey,
		"--use-service-account-credentials=true", "--leader-elect=false",
		"--configure-cloud-routes=false", "--controllers=*,tokencleaner",
		"--profiling=false"); err != nil {
		return err
	}
	schedKC := c.kubeconfigOf("scheduler")
	_, err = c.spawnNode("kube-scheduler", o.Kube.Path("kube-scheduler"),
		"--kubeconfig="+schedKC, "--authentication-kubeconfig="+schedKC, "--authorization-kubeconfig="+schedKC,
		"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false", "--profiling=false")
	return err
}

func (c *Cluster) kubeconfigOf(id string) string {
	return filepath.Join(c.Dir, "kubeconfigs", id+".kubeconfig")
}

// startRuntime starts containerd (CRI, runc, CNI bridge like K3s' flannel
// backend) and imports the node's images.
func (c *Cluster) startRuntime(ctx context.Context, o Options) error {
	n := c.node
	dir := filepath.Join(c.Dir, "containerd-config")
	cniConf := filepath.Join(c.Dir, "cni-config")
	for _, d := range []string{dir, cniConf} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("localkube: %w", err)
		}
	}
	n.sock = filepath.Join(c.Dir, "containerd.sock")
	if err := render(filepath.Join(dir, "config.toml"), containerdConfig, map[string]string{
		"Sock": n.sock, "Pause": n.images["pause"].TagRef(), "CNIConf": cniConf, "CNIBin": cniBin,
	}); err != nil {
		return err
	}
	if err := render(filepath.Join(cniConf, "10-pressroom.conflist"), cniConfig, map[string]string{"Subnet": NodePodCIDR}); err != nil {
		return err
	}
	// containerd and the shims it starts live in the node's cgroup, so Stop
	// finds every process they made.
	ctrd, err := c.spawnNode("containerd", "containerd", "--config", filepath.Join(dir, "config.toml"))
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, ctrd, o.StartTimeout, func() error {
		return exec.CommandContext(ctx, "ctr", "--address", n.sock, "version").Run()
	}); err != nil {
		return err
	}
	t0 := time.Now()
	imgs := make([]nodeimages.Image, 0, len(n.images))
	for _, img := range n.images {
		imgs = append(imgs, img)
	}
	if err := c.ImportImages(ctx, imgs...); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: imported %d node images (%s)\n", len(imgs), time.Since(t0).Round(time.Millisecond))
	return nil
}

// ImportImages makes images available to the node's kubelet by digest.
func (c *Cluster) ImportImages(ctx context.Context, imgs ...nodeimages.Image) error {
	if c.node == nil {
		return errors.New("localkube: ImportImages needs a node (Options.Node)")
	}
	return nodeimages.Import(ctx, "ctr", c.node.sock, "k8s.io", imgs...)
}

// startKubelet starts the kubelet and waits for the node to be Ready.
func (c *Cluster) startKubelet(ctx context.Context, o Options) error {
	n, p := c.node, c.pki
	cfg := filepath.Join(c.Dir, "kubelet-config.yaml")
	servCert, servKey := p.pair("kubelet-serving")
	if err := render(cfg, kubeletConfig, map[string]string{
		"CA": p.CA, "CgroupRoot": "/" + n.cg.name, "ClusterDNS": ClusterDNS, "ClusterDomain": ClusterDomain,
		"ResolvConf": filepath.Join(c.Dir, "resolv.conf"), "Cert": servCert, "Key": servKey, "Sock": "unix://" + n.sock,
	}); err != nil {
		return err
	}
	if err := saveSysctls(); err != nil {
		return err
	}
	kubelet, err := c.spawnNode("kubelet", o.Kube.Path("kubelet"),
		"--config="+cfg, "--kubeconfig="+c.kubeconfigOf("kubelet"),
		"--hostname-override="+NodeName, "--node-ip="+n.net.nodeIP)
	if err != nil {
		return err
	}
	client, err := c.HTTPClient()
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, kubelet, o.StartTimeout, func() error {
		return c.get(client, c.Server+"/api/v1/nodes/"+NodeName, `"type":"Ready","status":"True"`)
	}); err != nil {
		return err
	}
	// The roles K3s gives a server (the kubelet may not set them itself).
	_, err = c.Kubectl(ctx, "label", "node", NodeName, "--overwrite",
		"node-role.kubernetes.io/control-plane=true", "node-role.kubernetes.io/master=true",
		"node.kubernetes.io/instance-type=k3s")
	return err
}

// startNetworking starts kube-proxy (iptables mode) and kube-router's
// NetworkPolicy controller the way K3s runs its embedded one: firewall only.
func (c *Cluster) startNetworking(ctx context.Context) error {
	cfg := filepath.Join(c.Dir, "kube-proxy-config.yaml")
	if err := render(cfg, kubeProxyConfig, map[string]string{
		"Kubeconfig": c.kubeconfigOf("kube-proxy"), "ClusterCIDR": PodCIDR, "Node": NodeName,
	}); err != nil {
		return err
	}
	if _, err := c.spawnNode("kube-proxy", c.node.kube.Path("kube-proxy"), "--config="+cfg); err != nil {
		return err
	}
	_, err := c.spawnNode("kube-router", c.node.parts.Path("kube-router"),
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--enable-cni=false", "--enable-ipv4=true", "--enable-ipv6=false",
		"--kubeconfig="+c.kubeconfigOf("kube-router"), "--hostname-override="+NodeName,
		"--service-cluster-ip-range="+ServiceCIDR, "--metrics-port=0", "--health-port=20244")
	return err
}

// startInternetDNS answers names in the internet namespace from a hosts file
// (AddInternetHost); the node's resolv.conf and so CoreDNS forward to it.
func (c *Cluster) startInternetDNS(ctx context.Context) error {
	n := c.node
	dir := filepath.Join(c.Dir, "internet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	n.hosts = filepath.Join(dir, "hosts")
	if _, err := os.Stat(n.hosts); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(n.hosts, nil, 0o644); err != nil {
			return fmt.Errorf("localkube: %w", err)
		}
	}
	corefile := filepath.Join(dir, "Corefile")
	// It listens on every address of its namespace (InternetDNS among them):
	// the node's CoreDNS has only K3s' plugins, bind not among them.
	conf := fmt.Sprintf(".:53 {\n    hosts %s {\n        ttl 5\n        reload 1s\n    }\n    errors\n}\n", n.hosts)
	if err := os.WriteFile(corefile, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	dns, err := c.spawnArgv("internet-dns", nsenter(n.inet.pid(), false, n.parts.Path("coredns"), "-conf", corefile)...)
	if err != nil {
		return err
	}
	// CoreDNS names its version once its servers are up.
	return c.waitFor(ctx, dns, 30*time.Second, func() error {
		b, _ := os.ReadFile(dns.log)
		if !strings.Contains(string(b), "CoreDNS-") {
			return errors.New("not serving yet")
		}
		return nil
	})
}

// AddInternetHost makes name resolve to ip for the node and its pods (the
// DNS answerer re-reads its hosts file within a second).
func (c *Cluster) AddInternetHost(name, ip string) error {
	if c.node == nil {
		return errors.New("localkube: AddInternetHost needs a node")
	}
	f, err := os.OpenFile(c.node.hosts, os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %s\n", ip, name)
	return err
}

// AddInternetAddress gives the internet namespace one more address (a server
// of the tests binds to it).
func (c *Cluster) AddInternetAddress(ctx context.Context, ip string) error {
	if c.node == nil {
		return errors.New("localkube: AddInternetAddress needs a node")
	}
	return run(ctx, nsenter(c.node.inet.pid(), false, "ip", "addr", "replace", ip+"/32", "dev", "lo")...)
}

// InternetPID is a process in the internet namespace (see InNamespace).
func (c *Cluster) InternetPID() int { return c.node.inet.pid() }

// InternetHostAddress is the internet namespace's address on its link to
// this machine (a browser here reaches internet servers there).
func (c *Cluster) InternetHostAddress() string { return c.node.net.inetHostSide }

// BusyboxImage is the node's busybox image (by digest), for test pods.
func (c *Cluster) BusyboxImage() string { return c.node.images["busybox"].Ref() }

// NodePID is a process in the node's namespaces (nsenter --target).
func (c *Cluster) NodePID() int { return c.node.holder.pid() }

// InternetCommand is argv run in the internet namespace; start it with
// SpawnInternet to have Stop end it.
func (c *Cluster) SpawnInternet(name string, argv ...string) (int, error) {
	p, err := c.spawnArgv(name, nsenter(c.node.inet.pid(), false, argv...)...)
	if err != nil {
		return 0, err
	}
	return p.pid(), nil
}

func render(path, tmpl string, data any) error {
	t, err := template.New(filepath.Base(path)).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return fmt.Errorf("localkube: template %s: %w", path, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("localkube: template %s: %w", path, err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("localkube: %w", err)
	}
	return nil
}

// applyAddons renders the embedded manifests with the node's images and
// applies them server-side.
func (c *Cluster) applyAddons(ctx context.Context, files ...string) error {
	refs := map[string]string{}
	for k, img := range c.node.images {
		refs[k] = img.Ref()
	}
	data := map[string]any{
		"Images": refs, "ClusterDomain": ClusterDomain, "ClusterDNS": ClusterDNS,
		"NodeIP": c.node.net.nodeIP, "NodeName": NodeName, "StoragePath": StoragePath,
	}
	for _, f := range files {
		src, err := addons.ReadFile("addons/" + f)
		if err != nil {
			return err
		}
		t, err := template.New(f).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return fmt.Errorf("localkube: addon %s: %w", f, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return fmt.Errorf("localkube: addon %s: %w", f, err)
		}
		if out, err := c.KubectlStdin(ctx, &b, "apply", "--server-side", "--force-conflicts", "--field-manager=localkube", "-f", "-"); err != nil {
			return fmt.Errorf("localkube: addon %s: %w\n%s", f, err, out)
		}
	}
	return nil
}

// waitAddons waits for every Deployment in kube-system to be available.
func (c *Cluster) waitAddons(ctx context.Context, timeout time.Duration) error {
	for _, d := range []string{"coredns", "local-path-provisioner", "traefik", "metrics-server"} {
		if out, err := c.Kubectl(ctx, "rollout", "status", "-n", "kube-system", "deployment/"+d, fmt.Sprintf("--timeout=%ds", int(timeout.Seconds()))); err != nil {
			return fmt.Errorf("localkube: addon %s did not become available: %w\n%s\n%s", d, err, out, c.describePods(ctx, "kube-system"))
		}
	}
	return nil
}

// Describe summarises the pods of namespace ns that are not ready.
func (c *Cluster) Describe(ctx context.Context, ns string) string { return c.describePods(ctx, ns) }

// describePods summarises pods that are not ready, for error messages.
func (c *Cluster) describePods(ctx context.Context, ns string) string {
	out, err := c.Kubectl(ctx, "get", "pods", "-n", ns, "-o", "json")
	if err != nil {
		return err.Error()
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Status   struct {
				Phase             string `json:"phase"`
				ContainerStatuses []struct {
					Name  string         `json:"name"`
					Ready bool           `json:"ready"`
					State map[string]any `json:"state"`
				} `json:"containerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if json.Unmarshal(out, &list) != nil {
		return string(out)
	}
	var b strings.Builder
	for _, p := range list.Items {
		for _, s := range p.Status.ContainerStatuses {
			if !s.Ready {
				st, _ := json.Marshal(s.State)
				fmt.Fprintf(&b, "  %s/%s %s: %s\n", p.Metadata.Name, s.Name, p.Status.Phase, st)
			}
		}
		if len(p.Status.ContainerStatuses) == 0 {
			fmt.Fprintf(&b, "  %s %s (no containers started)\n", p.Metadata.Name, p.Status.Phase)
		}
	}
	return b.String()
}

// startBackground runs what K3s does on its own after the node is up: its
// helm-install job applies Traefik's CRDs a while later, and ServiceLB gives
// LoadBalancer Services the node's addresses.
func (c *Cluster) startBackground(o Options) {
	n := c.node
	ctx, cancel := context.WithCancel(context.Background())
	n.bgCancel, n.bgDone = cancel, make(chan struct{})
	go func() {
		defer close(n.bgDone)
		crdsAt := time.After(o.TraefikCRDDelay)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-crdsAt:
				crdsAt = nil
				if err := c.ApplyTraefikCRDs(ctx); err != nil && ctx.Err() == nil {
					n.bgErr = err
					fmt.Fprintf(c.log, "localkube: %v\n", err)
				}
			case <-tick.C:
				if err := c.serviceLB(ctx); err != nil && ctx.Err() == nil {
					fmt.Fprintf(c.log, "localkube: servicelb: %v\n", err)
				}
			}
		}
	}()
}

// ApplyTraefikCRDs applies Traefik's CRDs now (the node does it on its own
// TraefikCRDDelay after start).
func (c *Cluster) ApplyTraefikCRDs(ctx context.Context) error {
	f, err := os.Open(filepath.Join(c.node.parts.Share, "traefik-crds.yaml"))
	if err != nil {
		return fmt.Errorf("traefik CRDs: %w", err)
	}
	defer f.Close()
	if out, err := c.KubectlStdin(ctx, f, "apply", "--server-side", "--force-conflicts", "--field-manager=helm", "-f", "-"); err != nil {
		return fmt.Errorf("traefik CRDs: %w\n%s", err, out)
	}
	fmt.Fprintf(c.log, "localkube: applied Traefik's CRDs (as K3s' traefik-crd chart does)\n")
	return nil
}

// serviceLB sets the node's addresses as the ingress of every LoadBalancer
// Service, as K3s' ServiceLB does; kube-proxy then forwards them.
func (c *Cluster) serviceLB(ctx context.Context) error {
	out, err := c.Kubectl(ctx, "get", "services", "-A", "-o", "json")
	if err != nil {
		return err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name, Namespace string } `json:"metadata"`
			Spec     struct{ Type string }            `json:"spec"`
			Status   struct {
				LoadBalancer struct {
					Ingress []struct{ IP string } `json:"ingress"`
				} `json:"loadBalancer"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":"VIP"},{"ip":%q,"ipMode":"VIP"}]}}}`, c.node.net.nodeIP, PublicIP)
	for _, s := range list.Items {
		if s.Spec.Type != "LoadBalancer" || len(s.Status.LoadBalancer.Ingress) == 2 {
			continue
		}
		if _, err := c.Kubectl(ctx, "patch", "service", s.Metadata.Name, "-n", s.Metadata.Namespace,
			"--subresource=status", "--type=merge", "-p", patch); err != nil {
			return err
		}
	}
	return nil
}

// stopNode ends the node: the kubelet first (pods stay), then every pod's
// processes (SIGTERM, SIGKILL after grace), then the runtime, networking and
// control plane, the namespaces (which takes their interfaces and rules
// with them), the cgroups, and the kernel settings the kubelet changed.
func (c *Cluster) stopNode() []error {
	n := c.node
	var errs []error
	if n.bgCancel != nil {
		n.bgCancel()
		<-n.bgDone
	}
	c.stopProc("kubelet")
	if n.cg != nil {
		errs = append(errs, n.cg.killAll("kubepods", 10*time.Second)...)
	}
	for _, name := range []string{"kube-router", "kube-proxy", "containerd"} {
		c.stopProc(name)
	}
	if n.cg != nil {
		errs = append(errs, n.cg.killAll("", 5*time.Second)...)
	}
	// The rest (control plane, namespaces) stops in Stop's reverse order.
	return errs
}

// afterStopNode runs once every process is gone.
func (c *Cluster) afterStopNode(ctx context.Context) []error {
	n := c.node
	var errs []error
	removeLinks(ctx, n.net)
	if n.cg != nil {
		if err := n.cg.remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.lock != nil {
		if err := restoreSysctls(n.lock.slot); err != nil {
			errs = append(errs, err)
		}
		n.lock.release()
	}
	return errs
}

// ContainerdSocket is the node's containerd socket ("" without a node).
func (c *Cluster) ContainerdSocket() string {
	if c.node == nil {
		return ""
	}
	return c.node.sock
}

// MemoryBytes is the memory the node uses now, below sub of its cgroup
// ("" all of it, "kubepods" its pods), without reclaimable page cache.
func (c *Cluster) MemoryBytes(sub string) (int64, error) {
	if c.node == nil {
		return 0, errors.New("localkube: MemoryBytes needs a node")
	}
	return c.node.cg.memoryBytes(sub)
}

// NamespaceMemoryBytes is the memory the running pods of namespace ns use now.
func (c *Cluster) NamespaceMemoryBytes(ns string) (int64, error) {
	out, err := c.Kubectl(context.Background(), "get", "pods", "-n", ns, "--field-selector=status.phase=Running", "-o",
		`jsonpath={range .items[*]}{.metadata.uid} {.status.qosClass}{"\n"}{end}`)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		uid, qos, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		dir := "kubepods/pod" + uid
		if qos != "Guaranteed" {
			dir = "kubepods/" + strings.ToLower(qos) + "/pod" + uid
		}
		n, err := c.node.cg.memoryBytes(dir)
		if err != nil {
			return 0, fmt.Errorf("localkube: pod %s: %w", uid, err)
		}
		total += n
	}
	return total, nil
}
