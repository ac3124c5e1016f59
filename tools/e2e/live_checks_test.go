package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pressroom.dev/kit/server"
	"pressroom.dev/tools/localstack"
)

// crdsWhenUpWaits plays K3s' helm-install job late: Traefik's CRDs are
// applied only once the first `up` has run for a minute without creating
// the namespace, i.e. while the readiness gate holds it back. Had the
// program not waited, it would have failed on the Middlewares.
func (lc *liveCluster) crdsWhenUpWaits(ctx context.Context, t *testing.T) {
	lc.upStarted = time.Now()
	for time.Since(lc.upStarted) < time.Minute {
		if _, err := lc.c.Kubectl(ctx, "get", "namespace", "pressroom"); err == nil {
			lc.crdsErr = fmt.Errorf("the namespace was created %s into the first up, before Traefik's CRDs existed: the readiness gate did not wait for them", time.Since(lc.upStarted).Round(time.Second))
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	lc.crdsAt = time.Now()
	if err := lc.c.ApplyTraefikCRDs(ctx); err != nil && lc.crdsErr == nil {
		lc.crdsErr = err
	}
}

func (lc *liveCluster) crdRaceWon(t *testing.T) {
	t.Helper()
	if lc.crdsErr != nil {
		t.Fatal(lc.crdsErr)
	}
	if lc.crdsAt.IsZero() {
		t.Fatal("the first up finished before Traefik's CRDs were applied")
	}
	t.Logf("   Traefik's CRDs arrived %s into the first up; it waited for them and succeeded", lc.crdsAt.Sub(lc.upStarted).Round(time.Second))
}

type kubeList struct {
	Items []struct {
		Metadata struct {
			Name, Namespace string
			Labels          map[string]string
		} `json:"metadata"`
		Spec struct {
			Replicas   *int `json:"replicas"`
			Containers []struct {
				Name string `json:"name"`
			} `json:"containers"`
		} `json:"spec"`
		Status struct {
			Phase             string `json:"phase"`
			Replicas          int    `json:"replicas"`
			ReadyReplicas     int    `json:"readyReplicas"`
			AvailableReplicas int    `json:"availableReplicas"`
			ContainerStatuses []struct {
				Name        string `json:"name"`
				Ready       bool   `json:"ready"`
				ContainerID string `json:"containerID"`
			} `json:"containerStatuses"`
			CurrentMetrics []struct {
				Resource struct {
					Current struct {
						AverageUtilization *int `json:"averageUtilization"`
					} `json:"current"`
				} `json:"resource"`
			} `json:"currentMetrics"`
		} `json:"status"`
	} `json:"items"`
}

func (lc *liveCluster) list(ctx context.Context, t *testing.T, kind string) kubeList {
	t.Helper()
	var l kubeList
	if err := json.Unmarshal([]byte(lc.kubectl(ctx, t, "get", kind, "-n", "pressroom", "-o", "json")), &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// allReady: every Deployment available, every StatefulSet ready, every
// claim bound by local-path, and the HPAs reading CPU from metrics-server.
// The HPAs resize article and web right after up, so it waits for them.
func (lc *liveCluster) allReady(ctx context.Context, t *testing.T) {
	t.Helper()
	lc.waitFor(ctx, t, 5*time.Minute, "every workload ready", func() []string {
		var notReady []string
		for _, d := range lc.list(ctx, t, "deployments").Items {
			if d.Spec.Replicas == nil || d.Status.AvailableReplicas < *d.Spec.Replicas {
				notReady = append(notReady, fmt.Sprintf("deployment %s %d/%d", d.Metadata.Name, d.Status.AvailableReplicas, deref(d.Spec.Replicas)))
			}
		}
		for _, s := range lc.list(ctx, t, "statefulsets").Items {
			if s.Spec.Replicas == nil || s.Status.ReadyReplicas < *s.Spec.Replicas {
				notReady = append(notReady, fmt.Sprintf("statefulset %s %d/%d", s.Metadata.Name, s.Status.ReadyReplicas, deref(s.Spec.Replicas)))
			}
		}
		return notReady
	})
	// The backups claim binds when a pod first uses it (local-path waits for
	// the first consumer): run the backup CronJob's Job now, as the first
	// scheduled run would.
	lc.kubectl(ctx, t, "create", "job", "backup-now", "--from=cronjob/backup", "-n", "pressroom")
	if out, err := lc.c.Kubectl(ctx, "wait", "--for=condition=Complete", "job/backup-now", "-n", "pressroom", "--timeout=5m"); err != nil {
		logs, _ := lc.c.Kubectl(ctx, "logs", "-n", "pressroom", "job/backup-now", "--all-containers", "--tail=40")
		t.Fatalf("the backup Job did not complete: %v\n%s\n%s", err, out, logs)
	}
	pvcs := lc.kubectl(ctx, t, "get", "pvc", "-n", "pressroom", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.spec.storageClassName} {end}`)
	for _, f := range strings.Fields(pvcs) {
		if !strings.HasSuffix(f, "=Bound/local-path") {
			t.Errorf("claim not bound by local-path: %s", f)
		}
	}
	lc.waitFor(ctx, t, 4*time.Minute, "HPAs reading CPU", func() []string {
		var missing []string
		for _, h := range lc.list(ctx, t, "hpa").Items {
			if len(h.Status.CurrentMetrics) == 0 || h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil {
				missing = append(missing, h.Metadata.Name)
			}
		}
		return missing
	})
	t.Logf("   every workload ready; claims bound (%s); a backup Job completed; HPAs read CPU:\n%s", strings.TrimSpace(pvcs), lc.kubectl(ctx, t, "get", "hpa", "-n", "pressroom"))
}

// waitFor polls pending until it lists nothing, failing with its last list.
func (lc *liveCluster) waitFor(ctx context.Context, t *testing.T, d time.Duration, what string, pending func() []string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := pending()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not, after %s: %s\n%s", what, d, strings.Join(left, ", "), lc.c.Describe(ctx, "pressroom"))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(3 * time.Second):
		}
	}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// hardened reads each running container's process on the node: non-root,
// no capabilities, seccomp filtering, no new privileges, read-only root.
func (lc *liveCluster) hardened(ctx context.Context, t *testing.T) {
	t.Helper()
	pids, err := lc.taskPIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range lc.list(ctx, t, "pods").Items {
		if p.Status.Phase != "Running" {
			continue
		}
		for _, cs := range p.Status.ContainerStatuses {
			id := strings.TrimPrefix(cs.ContainerID, "containerd://")
			pid, ok := pids[id]
			if !ok {
				t.Errorf("%s/%s: no running task %s on the node", p.Metadata.Name, cs.Name, id)
				continue
			}
			if problems := processHardening(pid); len(problems) > 0 {
				t.Errorf("%s/%s (pid %d): %s", p.Metadata.Name, cs.Name, pid, strings.Join(problems, "; "))
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no container was checked")
	}
	t.Logf("   %d containers run non-root, with no capabilities, seccomp on, no new privileges, read-only root", checked)
}

// taskPIDs maps container ids to their main process, as containerd knows them.
func (lc *liveCluster) taskPIDs(ctx context.Context) (map[string]int, error) {
	out, err := exec.CommandContext(ctx, "ctr", "--address", lc.cf.ContainerdSocket, "-n", "k8s.io", "tasks", "ls").Output()
	if err != nil {
		return nil, fmt.Errorf("ctr tasks ls: %w", err)
	}
	pids := map[string]int{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == "RUNNING" {
			if pid, err := strconv.Atoi(f[1]); err == nil {
				pids[f[0]] = pid
			}
		}
	}
	return pids, nil
}

func processHardening(pid int) []string {
	var problems []string
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return []string{err.Error()}
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	for _, id := range strings.Fields(fields["Uid"]) {
		if id == "0" {
			problems = append(problems, "runs as root (Uid "+fields["Uid"]+")")
			break
		}
	}
	for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
		if fields[c] != "0000000000000000" {
			problems = append(problems, c+" "+fields[c])
		}
	}
	if fields["Seccomp"] != "2" {
		problems = append(problems, "seccomp mode "+fields["Seccomp"]+" (want 2, filtering)")
	}
	if fields["NoNewPrivs"] != "1" {
		problems = append(problems, "NoNewPrivs "+fields["NoNewPrivs"])
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return append(problems, err.Error())
	}
	rootRO := false
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			rootRO = strings.HasPrefix(f[5], "ro,") || f[5] == "ro"
		}
	}
	if !rootRO {
		problems = append(problems, "root filesystem is writable")
	}
	return problems
}

// routes: what Traefik answers for the stack's Ingresses and Middlewares.
func (lc *liveCluster) routes(ctx context.Context, t *testing.T) {
	t.Helper()
	c := lc.siteClient()
	get := func(url string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s through Traefik: %v", url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	d := localstack.Domain
	type check struct {
		url, location string
		status        int
		hsts          string // "sent" (HTTPS), "absent" (HTTP) or "" (not checked)
	}
	checks := []check{
		{"http://" + d + "/", "https://" + d + "/", http.StatusMovedPermanently, "absent"},
		{"https://www." + d + "/x?y=1", "https://" + d + "/x?y=1", http.StatusMovedPermanently, "sent"},
		{"https://" + d + "/", "", http.StatusOK, "sent"},
	}
	for _, p := range server.InternalPaths {
		checks = append(checks, check{"https://" + d + p, "", http.StatusForbidden, ""})
	}
	for _, ck := range checks {
		resp := get(ck.url)
		hsts := resp.Header.Get("Strict-Transport-Security")
		if resp.StatusCode != ck.status || resp.Header.Get("Location") != ck.location {
			t.Errorf("GET %s: %d Location %q, want %d %q", ck.url, resp.StatusCode, resp.Header.Get("Location"), ck.status, ck.location)
		}
		if ck.hsts == "sent" && hsts == "" || ck.hsts == "absent" && hsts != "" {
			t.Errorf("GET %s: HSTS %q, want it over HTTPS only", ck.url, hsts)
		}
	}
	if resp := get("https://" + d + "/"); !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=31536000") {
		t.Errorf("no HSTS over HTTPS: %q", resp.Header.Get("Strict-Transport-Security"))
	}
	t.Logf("   Traefik: http→https 301, www→apex 301, / 200, HSTS over HTTPS only, %v 403", server.InternalPaths)
}

// eventsFlow: article's relay and notification's consumer are connected to
// the in-cluster NATS (its monitoring endpoint, through the API server).
func (lc *liveCluster) eventsFlow(ctx context.Context, t *testing.T) {
	t.Helper()
	var jsz struct {
		AccountDetails []struct {
			StreamDetail []struct {
				Name           string `json:"name"`
				ConsumerDetail []struct {
					Name       string `json:"name"`
					NumWaiting int    `json:"num_waiting"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	var connz struct {
		Connections []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		raw := lc.kubectl(ctx, t, "get", "--raw", "/api/v1/namespaces/pressroom/services/nats:monitor/proxy/jsz?consumers=true&accounts=true")
		_ = json.Unmarshal([]byte(raw), &jsz)
		_ = json.Unmarshal([]byte(lc.kubectl(ctx, t, "get", "--raw", "/api/v1/namespaces/pressroom/services/nats:monitor/proxy/connz")), &connz)
		waiting := 0
		for _, a := range jsz.AccountDetails {
			for _, s := range a.StreamDetail {
				for _, c := range s.ConsumerDetail {
					waiting += c.NumWaiting
				}
			}
		}
		if waiting > 0 && len(connz.Connections) >= 2 {
			names := []string{}
			for _, c := range connz.Connections {
				names = append(names, c.Name)
			}
			t.Logf("   NATS: %d connections %v, notification's consumer is pulling", len(connz.Connections), names)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS after 2 minutes: %d connections, no consumer pulling:\n%s", len(connz.Connections), raw)
		}
		time.Sleep(3 * time.Second)
	}
}

// journey is the browser story, through Traefik on the node.
func (lc *liveCluster) journey(ctx context.Context, t *testing.T) {
	t.Helper()
	jctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	journey(t, jctx, site{
		base:       "https://" + localstack.Domain,
		flags:      lc.browserFlags(t),
		notified:   lc.notified,
		shotPrefix: "live-",
	})
	t.Logf("   the browser journey passed through Traefik over HTTPS, Chromium trusting the ACME CA's root")
}

// notified waits for notification's record of the event, read in its
// database inside the cluster.
func (lc *liveCluster) notified(t *testing.T, ctx context.Context, slug string) {
	t.Helper()
	if strings.ContainsAny(slug, `'\`) {
		t.Fatalf("unexpected slug %q", slug)
	}
	q := fmt.Sprintf("SELECT status FROM notifications WHERE slug = '%s' AND event_type = 'articles.published'", slug)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := lc.c.Kubectl(ctx, "exec", "-n", "pressroom", "postgres-0", "-c", "postgres", "--",
			"psql", "-U", "postgres", "-d", "notification_db", "-tAc", q)
		if err == nil && strings.TrimSpace(string(out)) == "sent" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sent articles.published notification for %q after 60s: %v %s", slug, err, out)
		}
		time.Sleep(time.Second)
	}
}

// podsReplaced deletes one pod of every Deployment while a client keeps
// asking for the home page through Traefik.
func (lc *liveCluster) podsReplaced(ctx context.Context, t *testing.T) {
	t.Helper()
	client := lc.siteClient()
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := client.Get("https://" + localstack.Domain + "/")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err == nil && resp.StatusCode == http.StatusOK {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		}
	}()
	t0 := time.Now()
	for _, d := range lc.list(ctx, t, "deployments").Items {
		pods := lc.kubectl(ctx, t, "get", "pods", "-n", "pressroom", "-l", "app.kubernetes.io/name="+d.Metadata.Name,
			"-o", "jsonpath={.items[0].metadata.name}")
		lc.kubectl(ctx, t, "delete", "pod", "-n", "pressroom", pods, "--wait=false")
		lc.kubectl(ctx, t, "rollout", "status", "-n", "pressroom", "deployment/"+d.Metadata.Name, "--timeout=5m")
	}
	// The replacements are Ready: the site must answer again.
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if ok.Load() == 0 {
		t.Fatal("the site never answered while pods were replaced")
	}
	resp, err := client.Get("https://" + localstack.Domain + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after every Deployment replaced a pod, GET / = %v %v", resp, err)
	}
	resp.Body.Close()
	t.Logf("   one pod of each Deployment deleted and replaced in %s; home page: %d answered, %d failed meanwhile",
		time.Since(t0).Round(time.Second), ok.Load(), failed.Load())
}

// memory reports the node's and the platform pods' memory, idle.
func (lc *liveCluster) memory(t *testing.T) {
	t.Helper()
	node, err := lc.c.MemoryBytes("")
	if err != nil {
		t.Fatal(err)
	}
	pods, err := lc.c.NamespaceMemoryBytes("pressroom")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("   memory: whole node %.0f MiB, the platform's pods %.0f MiB (goal: under 1536 MiB)", float64(node)/(1<<20), float64(pods)/(1<<20))
	if pods > 1536<<20 {
		t.Errorf("the platform's pods use %.0f MiB, over the 1.5 GiB goal", float64(pods)/(1<<20))
	}
}
