package localkube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// FakeNodeName is the node the simulator registers.
const FakeNodeName = "localkube-node"

// fakeNode stands in for a kubelet and a volume provisioner, so workloads
// reach the states `pulumi up` waits for without running any container:
// pending pods are bound to one Ready node and reported Running and Ready,
// deleted pods are removed (the kubelet's job), and pending PVCs get a
// pre-bound PersistentVolume. Nothing runs; only the API objects move.
type fakeNode struct {
	c      *Cluster
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	nextIP int
	errs   int
}

func (c *Cluster) startFakeNode(ctx context.Context) error {
	client, err := c.HTTPClient()
	if err != nil {
		return err
	}
	f := &fakeNode{c: c, client: client, done: make(chan struct{}), nextIP: 10}
	node := map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": FakeNodeName, "labels": map[string]any{
			"kubernetes.io/hostname": FakeNodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		}},
	}
	if err := f.do(ctx, "POST", "/api/v1/nodes", "application/json", node, nil); err != nil {
		return fmt.Errorf("localkube: register fake node: %w", err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	capacity := map[string]any{"cpu": "16", "memory": "64Gi", "pods": "250", "ephemeral-storage": "200Gi"}
	status := map[string]any{"status": map[string]any{
		"capacity": capacity, "allocatable": capacity,
		"addresses": []any{map[string]any{"type": "InternalIP", "address": "127.0.0.1"}, map[string]any{"type": "Hostname", "address": FakeNodeName}},
		"conditions": []any{map[string]any{
			"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "localkube fake node",
			"lastHeartbeatTime": now, "lastTransitionTime": now,
		}},
		"nodeInfo": map[string]any{"kubeletVersion": "v1.33.13", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "fake://0"},
	}}
	if err := f.do(ctx, "PATCH", "/api/v1/nodes/"+FakeNodeName+"/status", "application/merge-patch+json", status, nil); err != nil {
		return fmt.Errorf("localkube: fake node status: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.loop(loopCtx)
	c.fake = f
	return nil
}

func (f *fakeNode) stop() {
	f.cancel()
	<-f.done
}

func (f *fakeNode) loop(ctx context.Context) {
	defer close(f.done)
	t := time.NewTicker(300 * time.Millisecond)
	defer t.Stop()
	for {
		if err := f.reconcile(ctx); err != nil && ctx.Err() == nil {
			f.mu.Lock()
			f.errs++
			if f.errs <= 5 { // enough to diagnose, not a flood
				fmt.Fprintf(f.c.log, "localkube: fake node: %v\n", err)
			}
			f.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type objMeta struct {
	Name              string  `json:"name"`
	Namespace         string  `json:"namespace"`
	UID               string  `json:"uid"`
	DeletionTimestamp *string `json:"deletionTimestamp"`
}

func (f *fakeNode) reconcile(ctx context.Context) error {
	var pods struct {
		Items []struct {
			Metadata objMeta `json:"metadata"`
			Spec     struct {
				NodeName       string `json:"nodeName"`
				InitContainers []struct {
					Name  string `json:"name"`
					Image string `json:"image"`
				} `json:"initContainers"`
				Containers []struct {
					Name  string `json:"name"`
					Image string `json:"image"`
				} `json:"containers"`
			} `json:"spec"`
			Status struct {
				Phase string `json:"phase"`
				PodIP string `json:"podIP"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := f.do(ctx, "GET", "/api/v1/pods", "", nil, &pods); err != nil {
		return err
	}
	for _, p := range pods.Items {
		m := p.Metadata
		base := fmt.Sprintf("/api/v1/namespaces/%s/pods/%s", m.Namespace, m.Name)
		switch {
		case m.DeletionTimestamp != nil:
			// The kubelet would confirm the deletion once containers stopped.
			if err := f.do(ctx, "DELETE", base+"?gracePeriodSeconds=0", "application/json",
				map[string]any{"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": map[string]any{"uid": m.UID}}, nil); err != nil && !isNotFound(err) {
				return err
			}
		case p.Spec.NodeName == "":
			binding := map[string]any{"apiVersion": "v1", "kind": "Binding",
				"metadata": map[string]any{"name": m.Name, "uid": m.UID},
				"target":   map[string]any{"apiVersion": "v1", "kind": "Node", "name": FakeNodeName}}
			if err := f.do(ctx, "POST", base+"/binding", "application/json", binding, nil); err != nil && !isNotFound(err) && !isConflict(err) {
				return err
			}
		case p.Spec.NodeName == FakeNodeName && (p.Status.Phase != "Running" || p.Status.PodIP == ""):
			now := time.Now().UTC().Format(time.RFC3339)
			ip := f.allocIP()
			cond := func(t string) map[string]any {
				return map[string]any{"type": t, "status": "True", "lastTransitionTime": now}
			}
			running := map[string]any{"running": map[string]any{"startedAt": now}}
			var statuses, initStatuses []any
			for _, c := range p.Spec.Containers {
				statuses = append(statuses, map[string]any{"name": c.Name, "image": c.Image, "imageID": c.Image,
					"ready": true, "started": true, "restartCount": 0, "state": running, "containerID": "fake://" + m.UID + "/" + c.Name})
			}
			for _, c := range p.Spec.InitContainers {
				initStatuses = append(initStatuses, map[string]any{"name": c.Name, "image": c.Image, "imageID": c.Image,
					"ready": true, "restartCount": 0, "state": map[string]any{"terminated": map[string]any{"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}})
			}
			st := map[string]any{
				"phase": "Running", "hostIP": "127.0.0.1", "hostIPs": []any{map[string]any{"ip": "127.0.0.1"}},
				"podIP": ip, "podIPs": []any{map[string]any{"ip": ip}}, "startTime": now,
				"conditions":        []any{cond("PodScheduled"), cond("Initialized"), cond("ContainersReady"), cond("Ready")},
				"containerStatuses": statuses,
			}
			if len(initStatuses) > 0 {
				st["initContainerStatuses"] = initStatuses
			}
			if err := f.do(ctx, "PATCH", base+"/status", "application/merge-patch+json", map[string]any{"status": st}, nil); err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	return f.provision(ctx)
}

// provision pre-binds a hostPath PersistentVolume to every pending claim and
// removes volumes whose claim is gone.
func (f *fakeNode) provision(ctx context.Context) error {
	var pvcs struct {
		Items []struct {
			Metadata objMeta `json:"metadata"`
			Spec     struct {
				AccessModes      []string `json:"accessModes"`
				StorageClassName *string  `json:"storageClassName"`
				VolumeName       string   `json:"volumeName"`
				VolumeMode       *string  `json:"volumeMode"`
				Resources        struct {
					Requests map[string]string `json:"requests"`
				} `json:"resources"`
			} `json:"spec"`
			Status struct {
				Phase string `json:"phase"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := f.do(ctx, "GET", "/api/v1/persistentvolumeclaims", "", nil, &pvcs); err != nil {
		return err
	}
	for _, pvc := range pvcs.Items {
		if pvc.Status.Phase != "Pending" || pvc.Spec.VolumeName != "" || pvc.Metadata.DeletionTimestamp != nil {
			continue
		}
		size := pvc.Spec.Resources.Requests["storage"]
		if size == "" {
			size = "1Gi"
		}
		class := ""
		if pvc.Spec.StorageClassName != nil {
			class = *pvc.Spec.StorageClassName
		}
		name := "localkube-pv-" + pvc.Metadata.UID
		pv := map[string]any{
			"apiVersion": "v1", "kind": "PersistentVolume",
			"metadata": map[string]any{"name": name, "labels": map[string]any{"localkube/fake": "true"}},
			"spec": map[string]any{
				"capacity":                      map[string]any{"storage": size},
				"accessModes":                   pvc.Spec.AccessModes,
				"storageClassName":              class,
				"persistentVolumeReclaimPolicy": "Retain",
				"hostPath":                      map[string]any{"path": "/nonexistent/localkube/" + pvc.Metadata.UID},
				"claimRef": map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
					"namespace": pvc.Metadata.Namespace, "name": pvc.Metadata.Name, "uid": pvc.Metadata.UID},
			},
		}
		if err := f.do(ctx, "POST", "/api/v1/persistentvolumes", "application/json", pv, nil); err != nil && !isConflict(err) {
			return err
		}
	}
	var pvs struct {
		Items []struct {
			Metadata objMeta `json:"metadata"`
			Status   struct {
				Phase string `json:"phase"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := f.do(ctx, "GET", "/api/v1/persistentvolumes?labelSelector="+url.QueryEscape("localkube/fake=true"), "", nil, &pvs); err != nil {
		return err
	}
	for _, pv := range pvs.Items {
		if pv.Status.Phase == "Released" && pv.Metadata.DeletionTimestamp == nil {
			if err := f.do(ctx, "DELETE", "/api/v1/persistentvolumes/"+pv.Metadata.Name, "", nil, nil); err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	return nil
}

func (f *fakeNode) allocIP() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextIP++
	return fmt.Sprintf("10.244.%d.%d", f.nextIP/250, f.nextIP%250+1)
}

type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.msg) }

func isNotFound(err error) bool { e, ok := err.(*apiError); return ok && e.code == http.StatusNotFound }
func isConflict(err error) bool { e, ok := err.(*apiError); return ok && e.code == http.StatusConflict }

func (f *fakeNode) do(ctx context.Context, method, path, ctype string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.c.Server+path, rd)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return &apiError{code: resp.StatusCode, msg: method + " " + path + ": " + strings.TrimSpace(string(data))}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
