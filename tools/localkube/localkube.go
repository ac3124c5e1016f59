// Package localkube runs real Kubernetes on this machine with no Docker and
// no internet, from binaries built by tools/toolchain.
//
// By default it is a control plane on 127.0.0.1: etcd (Debian) +
// kube-apiserver + kube-controller-manager, enough to validate objects.
// With Options.Node it is a K3s-equivalent single node that runs pods: the
// control plane plus kube-scheduler, containerd/runc/CNI, kubelet,
// kube-proxy and kube-router's policy controller, in network and mount
// namespaces of its own, with CoreDNS, local-path-provisioner,
// metrics-server and Traefik deployed as K3s deploys them (node.go).
//
// Certificates are made fresh for every cluster; all state lives in one
// directory that Stop removes when Start made it. Stop kills only the
// processes Start started (and, for a node, what they started, found in the
// node's own cgroup).
//
//	c, err := localkube.Start(ctx, localkube.Options{})
//	defer c.Stop()
//	out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", "x.yaml")
package localkube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"pressroom.dev/tools/toolchain"
)

// Options configure Start. The zero value is ready to use.
type Options struct {
	// Dir holds all state (certs, etcd data, logs, kubeconfig). Empty means a
	// new temp dir, removed by Stop. A given Dir is kept by Stop.
	Dir string
	// Kube names the binaries; zero means toolchain.EnsureKube (cached build).
	Kube toolchain.Kube
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Node runs a real node (root only; see node.go).
	Node bool
	// Slot picks a node's addresses: 0 is make cluster's, AnySlot the first
	// free one of the others (tests).
	Slot int
	// NodeParts are the node's addon binaries; zero means toolchain.EnsureNode.
	NodeParts toolchain.NodeParts
	// TraefikCRDDelay is how long after the node is Ready Traefik's CRDs
	// arrive, as K3s' helm-install job applies them a while after start.
	// Zero means 30 seconds.
	TraefikCRDDelay time.Duration
	// StartTimeout bounds the wait for each component; default 3 minutes
	// (generous: the machine's 2 cores are shared).
	StartTimeout time.Duration
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string // state directory
	Kubeconfig string // admin kubeconfig (system:masters), self-contained
	Server     string // https://127.0.0.1:<port>, or a node's https://<NodeIP>:6443
	EtcdURL    string // http://127.0.0.1:<port>
	NodeIP     string // a node's address on its link to this machine

	pki     *pki
	node    *node
	procs   []*proc
	ownsDir bool
	log     io.Writer
	died    chan string // names of components that exited on their own
	stop    sync.Once
	stopErr error
}

type proc struct {
	name     string
	cmd      *exec.Cmd
	log      string
	done     chan struct{}
	err      error
	stopping atomic.Bool // set by stop: an exit after it is expected
}

// Start brings up etcd, kube-apiserver and kube-controller-manager and
// returns once the API server is ready and the controller manager has created
// the default ServiceAccount. On error nothing is left running.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.StartTimeout == 0 {
		o.StartTimeout = 3 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.TraefikCRDDelay == 0 {
		o.TraefikCRDDelay = 30 * time.Second
	}
	if o.Kube.Bin == "" {
		k, err := toolchain.EnsureKube(ctx)
		if err != nil {
			return nil, err
		}
		o.Kube = k
	}
	bins := []string{o.Kube.Etcd, o.Kube.APIServer(), o.Kube.ControllerManager()}
	if o.Node {
		if o.NodeParts.Bin == "" {
			parts, err := toolchain.EnsureNode(ctx)
			if err != nil {
				return nil, err
			}
			o.NodeParts = parts
		}
		for _, b := range []string{"kube-scheduler", "kubelet", "kube-proxy", "pause"} {
			bins = append(bins, o.Kube.Path(b))
		}
		for _, b := range []string{"coredns", "kube-router", "local-path-provisioner", "metrics-server", "traefik"} {
			bins = append(bins, o.NodeParts.Path(b))
		}
	}
	for _, bin := range bins {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("localkube: %s is missing (run tools/toolchain/kube-toolchain.sh and 'make deps'): %w", bin, err)
		}
	}
	c := &Cluster{Dir: o.Dir, log: o.Log, died: make(chan string, 32)}
	if c.Dir == "" {
		base := shmDir()
		if o.Node {
			base = os.TempDir() // images and volumes: disk, not RAM
		}
		d, err := os.MkdirTemp(base, "localkube-")
		if err != nil {
			return nil, fmt.Errorf("localkube: temp dir: %w", err)
		}
		c.Dir, c.ownsDir = d, true
	} else if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("localkube: state dir %s: %w", c.Dir, err)
	}
	c.Dir, _ = filepath.Abs(c.Dir)
	start := c.start
	if o.Node {
		if err := checkNodeHost(c.Dir); err != nil {
			if c.ownsDir {
				os.RemoveAll(c.Dir)
			}
			return nil, err
		}
		start = c.startNode
	}
	if err := start(ctx, o); err != nil {
		if stopErr := c.Stop(); stopErr != nil {
			err = fmt.Errorf("%w\n(and stopping what had started: %v)", err, stopErr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, o Options) error {
	for _, d := range []string{"pki", "logs", "etcd", "apiserver-certs", "controller-manager-certs"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return fmt.Errorf("localkube: %w", err)
		}
	}
	p, err := writePKI(filepath.Join(c.Dir, "pki"), "localkube-node", nil)
	if err != nil {
		return err
	}
	c.pki = p
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	c.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)

	apiCert, apiKey := p.pair("apiserver")
	t0 := time.Now()
	etcd, err := c.spawn("etcd", o.Kube.Etcd,
		"--name=localkube",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+c.EtcdURL, "--advertise-client-urls="+c.EtcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=localkube="+peer,
		"--log-level=warn")
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, etcd, o.StartTimeout, func() error { return c.get(http.DefaultClient, c.EtcdURL+"/health", `"true"`) }); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: etcd ready on %s (%s)\n", c.EtcdURL, time.Since(t0).Round(time.Millisecond))

	api, err := c.spawn("kube-apiserver", o.Kube.APIServer(),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--etcd-servers="+c.EtcdURL,
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file="+apiCert, "--tls-private-key-file="+apiKey,
		"--client-ca-file="+p.CA,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.SAPub,
		"--service-account-signing-key-file="+p.SAKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=Node,RBAC",
		"--profiling=false")
	if err != nil {
		return err
	}
	client, err := c.HTTPClient()
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, api, o.StartTimeout, func() error { return c.get(client, c.Server+"/readyz", "ok") }); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: kube-apiserver ready on %s (%s)\n", c.Server, time.Since(t0).Round(time.Millisecond))

	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.Server, p.caPEM, p.adminPEM, p.adminKey, "localkube-admin"); err != nil {
		return err
	}
	cmCertPath, cmKeyPath := p.pair("controller-manager")
	cmCert, _ := os.ReadFile(cmCertPath)
	cmKey, _ := os.ReadFile(cmKeyPath)
	cmKubeconfig := filepath.Join(c.Dir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(cmKubeconfig, c.Server, p.caPEM, cmCert, cmKey, "system:kube-controller-manager"); err != nil {
		return err
	}
	cm, err := c.spawn("kube-controller-manager", o.Kube.ControllerManager(),
		"--kubeconfig="+cmKubeconfig,
		"--authentication-kubeconfig="+cmKubeconfig,
		"--authorization-kubeconfig="+cmKubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=0",
		"--cert-dir="+filepath.Join(c.Dir, "controller-manager-certs"),
		"--service-account-private-key-file="+p.SAKey,
		"--root-ca-file="+p.CA,
		"--cluster-signing-cert-file="+p.CA, "--cluster-signing-key-file="+p.CAKey,
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--controllers=*",
		"--profiling=false")
	if err != nil {
		return err
	}
	// The default ServiceAccount appears only once the controller manager works.
	if err := c.waitFor(ctx, cm, o.StartTimeout, func() error {
		return c.get(client, c.Server+"/api/v1/namespaces/default/serviceaccounts/default", `"name":"default"`)
	}); err != nil {
		return err
	}
	fmt.Fprintf(c.log, "localkube: control plane ready in %s; KUBECONFIG=%s\n", time.Since(t0).Round(time.Millisecond), c.Kubeconfig)
	return nil
}

// HTTPClient returns a client authenticated as the admin.
func (c *Cluster) HTTPClient() (*http.Client, error) {
	cert, err := tls.X509KeyPair(c.pki.adminPEM, c.pki.adminKey)
	if err != nil {
		return nil, fmt.Errorf("localkube: admin key pair: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caPEM)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}

// Kubectl runs kubectl against the cluster as the admin and returns its
// combined output; a failure's error includes that output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return c.KubectlStdin(ctx, nil, args...)
}

// KubectlStdin is Kubectl with stdin (for `-f -`).
func (c *Cluster) KubectlStdin(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		return nil, errors.New("localkube: kubectl is not on PATH; install kubectl (Debian: kubernetes-client) and retry")
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.Bytes(), nil
}

// PIDs lists the processes this cluster started (for checks and logs).
func (c *Cluster) PIDs() []int {
	var pids []int
	for _, p := range c.procs {
		if p.cmd.Process != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

// Stop terminates the processes Start started, newest first (SIGTERM, then
// SIGKILL after 15 s), and removes the state dir if Start created it. It is
// safe to call more than once.
func (c *Cluster) Stop() error {
	c.stop.Do(func() {
		var errs []error
		for _, p := range c.procs { // from here on every exit is expected
			p.stopping.Store(true)
		}
		if c.node != nil {
			errs = append(errs, c.stopNode()...)
		}
		for i := len(c.procs) - 1; i >= 0; i-- {
			if err := c.procs[i].stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if c.node != nil {
			errs = append(errs, c.afterStopNode(context.Background())...)
		}
		if c.ownsDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("localkube: remove %s: %w", c.Dir, err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// Died receives the name of each component that exits while it should run
// (the node is broken from then on; its log says why).
func (c *Cluster) Died() <-chan string { return c.died }

// stop ends one process: SIGTERM, then SIGKILL after 15 s.
func (p *proc) stop() error {
	p.stopping.Store(true)
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("localkube: %s (pid %d) ignored SIGTERM and was killed", p.name, p.cmd.Process.Pid)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stopProc stops the process Start started under name, if it runs.
func (c *Cluster) stopProc(name string) {
	for _, p := range c.procs {
		if p.name == name {
			_ = p.stop()
		}
	}
}

func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	return c.spawnArgv(name, append([]string{bin}, args...)...)
}

// spawnNode starts a component inside the node's namespaces and cgroup.
func (c *Cluster) spawnNode(name, bin string, args ...string) (*proc, error) {
	return c.spawnArgv(name, nsenter(c.node.holder.pid(), true, append([]string{bin}, args...)...)...)
}

func (c *Cluster) spawnArgv(name string, argv ...string) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(c.Dir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("localkube: %w", err)
	}
	logPath := filepath.Join(c.Dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("localkube: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.Dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("localkube: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	if c.node != nil && c.node.cg != nil {
		if err := c.node.cg.join(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			f.Close()
			return nil, err
		}
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
		if !p.stopping.Load() {
			select {
			case c.died <- name:
			default:
			}
			fmt.Fprintf(c.log, "localkube: %s (pid %d) exited unexpectedly (%v); last log lines:\n%s\n",
				name, cmd.Process.Pid, p.err, tailFile(logPath, 15))
		}
	}()
	c.procs = append(c.procs, p)
	fmt.Fprintf(c.log, "localkube: started %s (pid %d), log %s\n", name, cmd.Process.Pid, logPath)
	return p, nil
}

// waitFor polls check until it passes, the process exits, or time runs out.
func (c *Cluster) waitFor(ctx context.Context, p *proc, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("localkube: %s exited early (%v); last log lines:\n%s", p.name, p.err, tailFile(p.log, 25))
		case <-ctx.Done():
			return fmt.Errorf("localkube: waiting for %s: %w", p.name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localkube: %s not ready after %s (%v); last log lines:\n%s", p.name, timeout, last, tailFile(p.log, 25))
		}
	}
}

func (c *Cluster) get(client *http.Client, url, want string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func writeKubeconfig(path, server string, ca, cert, key []byte, user string) error {
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: localkube
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: localkube
  context:
    cluster: localkube
    user: %s
current-context: localkube
`, server, b64(ca), user, b64(cert), b64(key), user)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("localkube: write kubeconfig: %w", err)
	}
	return nil
}

// freePorts reserves n distinct loopback ports by binding and releasing them.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("localkube: no free loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// shmDir prefers RAM-backed /dev/shm: etcd fsyncs a lot.
func shmDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", ".localkube-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
