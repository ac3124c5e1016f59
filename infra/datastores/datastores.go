// Package datastores runs the platform's state: Postgres (one database and
// role per service, created and kept at the Secret's passwords by the
// platform's own start script in the postgres-init ConfigMap), Redis (AOF,
// noeviction, password), NATS with JetStream file storage, and Jaeger v2
// with in-memory traces. Each is a StatefulSet (Jaeger: a Deployment) with a Service,
// probes, requests/limits, a restricted-PSS security context and its own
// NetworkPolicy from netpol.Flows.
package datastores

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	appsv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/apps/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/app"
	"pressroom.dev/infra/kube"
	"pressroom.dev/infra/netpol"
	"pressroom.dev/infra/secrets"
	"pressroom.dev/stacks"
)

// Images pins every datastore image by tag and digest.
type Images struct {
	Postgres, Redis, NATS, Jaeger string
}

// DefaultImages are the pinned upstream images (multi-arch index digests),
// the defaults of the stack setting datastoreImages.
var DefaultImages = Images(stacks.DefaultDatastoreImages)

// Check says which image is not pinned by digest (stacks.CheckImageRef).
func (i Images) Check() error {
	for _, img := range []struct{ name, ref string }{{"postgres", i.Postgres}, {"redis", i.Redis}, {"nats", i.NATS}, {"jaeger", i.Jaeger}} {
		if err := stacks.CheckImageRef(img.ref); err != nil {
			return fmt.Errorf("datastores: the %s image %v", img.name, err)
		}
	}
	return nil
}

// Storage sizes (Kubernetes quantities).
type Storage struct {
	Postgres, Redis, NATS string
}

// DatastoresArgs configures the datastores.
type DatastoresArgs struct {
	Namespace pulumi.StringInput
	Images    Images
	Storage   Storage
	// RedisMaxMemory bounds Redis (noeviction: writes fail loudly instead of
	// silently dropping sessions). Default 200mb, inside the 256Mi limit.
	RedisMaxMemory string
	SkipAwait      bool
	Protect        bool
	DependsOn      []pulumi.Resource // the Secrets they read
	// NodeSelector pins the StatefulSets to the node that holds the data
	// volume (clusters with more than one node), so their local-path
	// volumes live on the Block Storage volume that survives a droplet.
	NodeSelector map[string]string
	// SecretChecksums (secrets.Secrets.Checksums): when set, Postgres' and
	// Redis' pod templates carry a digest of the Secret keys they read, so a
	// changed password restarts them (Postgres' start script then sets it).
	SecretChecksums map[string]pulumi.StringOutput
}

// Datastores is the component.
type Datastores struct {
	pulumi.ResourceState

	PostgresHost pulumi.StringOutput `pulumi:"postgresHost"`
	RedisAddr    pulumi.StringOutput `pulumi:"redisAddr"`
	NATSURL      pulumi.StringOutput `pulumi:"natsUrl"`
	OTLPEndpoint pulumi.StringOutput `pulumi:"otlpEndpoint"`
}

// setupScript creates or updates one login role and one database per
// service and sets the superuser's password, all from the environment
// (secretKeyRef of the datastore-credentials Secret), never from this file.
// It is idempotent: startScript runs it at every start, and it can be run
// by hand (infra/OPERATIONS.md, "Rotate keys and passwords"). psql
// connects as PG* says (start.sh: its private socket; by hand: the
// server's socket, local trust).
const setupScript = `#!/bin/sh
# Creates or updates one database and one login role per service, and sets
# the superuser's password. Passwords come from the environment
# (secretKeyRef), never from this file.
set -eu
su="${POSTGRES_USER:-postgres}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
psql -X -q -v ON_ERROR_STOP=1 --username "$su" --dbname postgres -v role="$su" -v pw="$POSTGRES_PASSWORD" <<'SQL'
SELECT format('ALTER ROLE %%I WITH PASSWORD %%L', :'role', :'pw')\gexec
SQL
for svc in %[1]s; do
  var="$(echo "$svc" | tr a-z A-Z)_DB_PASSWORD"
  eval "pw=\${$var:?$var is not set}"
  psql -X -q -v ON_ERROR_STOP=1 --username "$su" --dbname postgres \
    -v role="$svc" -v db="${svc}_db" -v pw="$pw" <<'SQL'
SELECT format('CREATE ROLE %%I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\gexec
SELECT format('ALTER ROLE %%I WITH LOGIN PASSWORD %%L', :'role', :'pw')\gexec
SELECT format('CREATE DATABASE %%I OWNER %%I', :'db', :'role') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
SELECT format('REVOKE ALL ON DATABASE %%I FROM PUBLIC', :'db')\gexec
SELECT format('GRANT ALL ON DATABASE %%I TO %%I', :'db', :'role')\gexec
SQL
done
echo "setup.sh: roles, databases and passwords of %[1]s and $su are set"
`

// startScript is the postgres container's command. It needs only sh,
// initdb, postgres, pg_ctl and psql on PATH (and busybox-level mkdir,
// chmod, mktemp, rm, tr), not the upstream image's docker-entrypoint, which
// runs its init scripts only on an empty data directory: here the setup
// runs at every start, so a password changed in the Secret reaches an
// initialised database at the next start, before any client can connect.
// Arguments are added to the final postgres command line (tests use them).
const startScript = `#!/bin/sh
# pressroom's Postgres start:
#  1. first start (no $PGDATA/PG_VERSION): initdb, UTF8, locale C.UTF-8,
#     local (socket) logins trusted, TCP logins by SCRAM password;
#  2. every start: a temporary server that listens on no TCP address, only on
#     a private socket under /tmp, runs setup.sh (roles, databases, every
#     password from the environment), then stops;
#  3. exec postgres on all addresses.
set -eu
: "${PGDATA:?PGDATA is not set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
su="${POSTGRES_USER:-postgres}"
case "$0" in */*) here="${0%%/*}" ;; *) here=. ;; esac
tmp="${TMPDIR:-/tmp}"
# Every password must be there before anything is written.
for svc in %[1]s; do
  var="$(echo "$svc" | tr a-z A-Z)_DB_PASSWORD"
  eval ": \"\${$var:?$var is not set}\""
done

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "start.sh: first start: initialising $PGDATA"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  pwfile="$(umask 077 && mktemp "$tmp/pressroom-pw.XXXXXX")"
  trap 'rm -f "$pwfile"' EXIT
  printf '%%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$su" --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
  rm -f "$pwfile"
  trap - EXIT
  printf '\n# pressroom: SCRAM password logins from any address\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
fi

sock="$(umask 077 && mktemp -d "$tmp/pressroom-pg.XXXXXX")"
trap 'pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$sock"' EXIT
echo "start.sh: applying setup.sh on a server that listens only on $sock"
pg_ctl -D "$PGDATA" -w -t 300 -o "-c listen_addresses='' -c unix_socket_directories='$sock' -c port=5432" start
PGHOST="$sock" PGPORT=5432 PGDATABASE=postgres sh "$here/setup.sh"
pg_ctl -D "$PGDATA" -m fast -w -t 300 stop
trap - EXIT
rm -rf "$sock"
echo "start.sh: setup done; starting postgres on all addresses"
exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
`

// SetupScript is setup.sh of the postgres-init ConfigMap.
func SetupScript() string { return fmt.Sprintf(setupScript, strings.Join(stacks.Databases, " ")) }

// StartScript is start.sh of the postgres-init ConfigMap, the container's
// command (sh /scripts/start.sh); it runs setup.sh from its own directory.
func StartScript() string { return fmt.Sprintf(startScript, strings.Join(stacks.Databases, " ")) }

// ScriptsDir is where the postgres-init ConfigMap is mounted (read-only).
const ScriptsDir = "/scripts"

// ScriptsChecksumAnnotation on the postgres pod template carries the
// scripts' SHA-256: a changed script restarts Postgres, which runs it.
const ScriptsChecksumAnnotation = "pressroom.dev/scripts-sha256"

func scriptsChecksum() string {
	sum := sha256.Sum256([]byte(StartScript() + "\x00" + SetupScript()))
	return hex.EncodeToString(sum[:])
}

// Well-known uids of the upstream images (alpine variants), so the pods run
// non-root with volumes they own.
const (
	postgresUID = 70
	redisUID    = 999
	natsUID     = 1000
	jaegerUID   = 10001
)

// NewDatastores creates Postgres, Redis, NATS and Jaeger.
func NewDatastores(ctx *pulumi.Context, name string, args *DatastoresArgs, opts ...pulumi.ResourceOption) (*Datastores, error) {
	if args == nil || args.Namespace == nil {
		return nil, fmt.Errorf("datastores: Namespace is required")
	}
	a := *args
	if a.Images == (Images{}) {
		a.Images = DefaultImages
	}
	if err := a.Images.Check(); err != nil {
		return nil, err
	}
	def := stacks.Defaults("").Storage
	if a.Storage.Postgres == "" {
		a.Storage.Postgres = def.Postgres
	}
	if a.Storage.Redis == "" {
		a.Storage.Redis = def.Redis
	}
	if a.Storage.NATS == "" {
		a.Storage.NATS = def.NATS
	}
	if a.RedisMaxMemory == "" {
		a.RedisMaxMemory = "200mb"
	}
	d := &Datastores{}
	if err := ctx.RegisterComponentResource("pressroom:datastores:Datastores", name, d, opts...); err != nil {
		return nil, err
	}
	b := builder{ctx: ctx, ns: a.Namespace, parent: d, args: &a}
	if err := b.postgres(); err != nil {
		return nil, err
	}
	if err := b.redis(); err != nil {
		return nil, err
	}
	if err := b.nats(); err != nil {
		return nil, err
	}
	if err := b.jaeger(); err != nil {
		return nil, err
	}
	d.PostgresHost = pulumi.String("postgres").ToStringOutput()
	d.RedisAddr = pulumi.String("redis:6379").ToStringOutput()
	d.NATSURL = pulumi.String("nats://nats:4222").ToStringOutput()
	d.OTLPEndpoint = pulumi.String("http://jaeger:4317").ToStringOutput()
	if err := ctx.RegisterResourceOutputs(d, pulumi.Map{
		"postgresHost": d.PostgresHost, "redisAddr": d.RedisAddr, "natsUrl": d.NATSURL, "otlpEndpoint": d.OTLPEndpoint,
	}); err != nil {
		return nil, err
	}
	return d, nil
}

type builder struct {
	ctx    *pulumi.Context
	ns     pulumi.StringInput
	parent pulumi.Resource
	args   *DatastoresArgs
}

func (b builder) opts(stateful bool) []pulumi.ResourceOption {
	o := kube.Child(b.parent)
	if len(b.args.DependsOn) > 0 {
		o = append(o, pulumi.DependsOn(b.args.DependsOn))
	}
	if stateful && b.args.Protect {
		o = append(o, pulumi.Protect(true))
	}
	return o
}

func (b builder) annotations() map[string]string {
	if b.args.SkipAwait {
		return map[string]string{kube.SkipAwaitAnnotation: "true"}
	}
	return nil
}

// common creates the ServiceAccount, Service and NetworkPolicy of a workload.
func (b builder) common(name string, ports map[string]int) error {
	if _, err := corev1.NewServiceAccount(b.ctx, name, &corev1.ServiceAccountArgs{
		Metadata:                     kube.Meta(b.ns, name, "datastore", nil),
		AutomountServiceAccountToken: pulumi.Bool(false),
	}, b.opts(false)...); err != nil {
		return fmt.Errorf("%s service account: %w", name, err)
	}
	sp := corev1.ServicePortArray{}
	for _, pn := range sortedPorts(ports) {
		sp = append(sp, corev1.ServicePortArgs{
			Name: pulumi.String(pn), Port: pulumi.Int(ports[pn]), TargetPort: pulumi.String(pn), Protocol: pulumi.String("TCP"),
		})
	}
	if _, err := corev1.NewService(b.ctx, name, &corev1.ServiceArgs{
		Metadata: kube.Meta(b.ns, name, "datastore", b.annotations()),
		Spec: &corev1.ServiceSpecArgs{
			Type: pulumi.String("ClusterIP"), Selector: kube.Selector(name), Ports: sp,
		},
	}, b.opts(false)...); err != nil {
		return fmt.Errorf("%s service: %w", name, err)
	}
	if _, err := netpol.NewPolicy(b.ctx, b.ns, name, b.opts(false)...); err != nil {
		return fmt.Errorf("%s network policy: %w", name, err)
	}
	return nil
}

func sortedPorts(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	// at most three ports: insertion sort keeps it dependency-free
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func containerPorts(ports map[string]int) corev1.ContainerPortArray {
	cp := corev1.ContainerPortArray{}
	for _, pn := range sortedPorts(ports) {
		cp = append(cp, corev1.ContainerPortArgs{Name: pulumi.String(pn), ContainerPort: pulumi.Int(ports[pn]), Protocol: pulumi.String("TCP")})
	}
	return cp
}

// secretsAnnotation adds the digest of the Secret keys a pod reads.
func (b builder) secretsAnnotation(ann pulumi.StringMap, refs ...app.SecretRef) pulumi.StringMap {
	if b.args.SecretChecksums == nil {
		return ann
	}
	if ann == nil {
		ann = pulumi.StringMap{}
	}
	ann[app.SecretsAnnotation] = app.SecretsDigest(b.args.SecretChecksums, refs)
	return ann
}

// checkChecksums says which Secret key a datastore reads has no digest.
func (b builder) checkChecksums(refs []app.SecretRef) error {
	if missing := app.MissingChecksums(b.args.SecretChecksums, refs); len(missing) > 0 {
		return fmt.Errorf("datastores: SecretChecksums has no digest of %s/%s", missing[0].Secret, missing[0].Key)
	}
	return nil
}

func (b builder) statefulSet(name, storage string, pod *corev1.PodSpecArgs, podAnnotations pulumi.StringMap) error {
	if len(b.args.NodeSelector) > 0 {
		pod.NodeSelector = pulumi.ToStringMap(b.args.NodeSelector)
	}
	podMeta := &metav1.ObjectMetaArgs{Labels: kube.Labels(name, "datastore")}
	if len(podAnnotations) > 0 {
		podMeta.Annotations = podAnnotations
	}
	_, err := appsv1.NewStatefulSet(b.ctx, name, &appsv1.StatefulSetArgs{
		Metadata: kube.Meta(b.ns, name, "datastore", b.annotations()),
		Spec: &appsv1.StatefulSetSpecArgs{
			ServiceName: pulumi.String(name),
			Replicas:    pulumi.Int(1),
			Selector:    &metav1.LabelSelectorArgs{MatchLabels: kube.Selector(name)},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: podMeta,
				Spec:     pod,
			},
			VolumeClaimTemplates: corev1.PersistentVolumeClaimTypeArray{corev1.PersistentVolumeClaimTypeArgs{
				Metadata: &metav1.ObjectMetaArgs{Name: pulumi.String("data"), Labels: kube.Labels(name, "datastore")},
				Spec: &corev1.PersistentVolumeClaimSpecArgs{
					AccessModes: pulumi.StringArray{pulumi.String("ReadWriteOnce")},
					Resources:   &corev1.VolumeResourceRequirementsArgs{Requests: pulumi.StringMap{"storage": pulumi.String(storage)}},
				},
			}},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs{
				WhenDeleted: pulumi.String("Retain"), WhenScaled: pulumi.String("Retain"),
			},
		},
	}, b.opts(true)...)
	if err != nil {
		return fmt.Errorf("%s statefulset: %w", name, err)
	}
	return nil
}

func pod(name string, uid int, c corev1.ContainerArgs, volumes corev1.VolumeArray) *corev1.PodSpecArgs {
	c.Name = pulumi.String(name)
	c.ImagePullPolicy = pulumi.String("IfNotPresent")
	c.SecurityContext = kube.ContainerSecurity()
	return &corev1.PodSpecArgs{
		ServiceAccountName:           pulumi.String(name),
		AutomountServiceAccountToken: pulumi.Bool(false),
		SecurityContext:              kube.PodSecurity(uid),
		Containers:                   corev1.ContainerArray{c},
		Volumes:                      append(corev1.VolumeArray{kube.TmpVolume("64Mi")}, volumes...),
	}
}

func (b builder) postgres() error {
	const name = "postgres"
	ports := map[string]int{"postgres": 5432}
	scripts, err := corev1.NewConfigMap(b.ctx, "postgres-init", &corev1.ConfigMapArgs{
		Metadata: kube.Meta(b.ns, "postgres-init", "datastore", nil),
		Data:     pulumi.StringMap{"start.sh": pulumi.String(StartScript()), "setup.sh": pulumi.String(SetupScript())},
	}, b.opts(false)...)
	if err != nil {
		return fmt.Errorf("postgres-init configmap: %w", err)
	}
	if err := b.common(name, ports); err != nil {
		return err
	}
	env := corev1.EnvVarArray{
		kube.Env("POSTGRES_USER", "postgres"),
		kube.SecretEnv("POSTGRES_PASSWORD", secrets.Datastores, secrets.PostgresKey),
		kube.Env("PGDATA", "/var/lib/postgresql/data/pgdata"),
	}
	reads := []app.SecretRef{{Secret: secrets.Datastores, Key: secrets.PostgresKey}}
	for _, svc := range stacks.Databases {
		env = append(env, kube.SecretEnv(strings.ToUpper(svc)+"_DB_PASSWORD", secrets.Datastores, secrets.PasswordKey(svc)))
		reads = append(reads, app.SecretRef{Secret: secrets.Datastores, Key: secrets.PasswordKey(svc)})
	}
	if err := b.checkChecksums(reads); err != nil {
		return err
	}
	isReady := []string{"pg_isready", "-h", "127.0.0.1", "-U", "postgres"}
	c := corev1.ContainerArgs{
		Image: pulumi.String(b.args.Images.Postgres),
		// The platform's start script, not the image's entrypoint: any image
		// with sh, initdb, postgres, pg_ctl and psql on PATH works.
		Command: pulumi.ToStringArray([]string{"sh", ScriptsDir + "/start.sh"}),
		Ports:   containerPorts(ports),
		Env:     env,
		VolumeMounts: corev1.VolumeMountArray{
			kube.TmpMount(),
			corev1.VolumeMountArgs{Name: pulumi.String("data"), MountPath: pulumi.String("/var/lib/postgresql/data")},
			corev1.VolumeMountArgs{Name: pulumi.String("run"), MountPath: pulumi.String("/var/run/postgresql")},
			corev1.VolumeMountArgs{Name: pulumi.String("scripts"), MountPath: pulumi.String(ScriptsDir), ReadOnly: pulumi.Bool(true)},
		},
		Resources: kube.Size{CPURequest: "100m", MemRequest: "256Mi", CPULimit: "1", MemLimit: "1Gi"}.Resources(),
		// initdb, crash recovery or the setup may take a while.
		StartupProbe:   kube.ExecProbe(5, 60, isReady...),
		ReadinessProbe: kube.ExecProbe(10, 3, isReady...),
		LivenessProbe:  kube.ExecProbe(20, 6, isReady...),
	}
	p := pod(name, postgresUID, c, corev1.VolumeArray{
		corev1.VolumeArgs{Name: pulumi.String("run"), EmptyDir: &corev1.EmptyDirVolumeSourceArgs{SizeLimit: pulumi.String("16Mi")}},
		corev1.VolumeArgs{Name: pulumi.String("scripts"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{
			Name: scripts.Metadata.Name().Elem(), DefaultMode: pulumi.Int(0o555),
		}},
	})
	p.TerminationGracePeriodSeconds = pulumi.Int(60) // a clean shutdown checkpoint
	ann := b.secretsAnnotation(pulumi.StringMap{ScriptsChecksumAnnotation: pulumi.String(scriptsChecksum())}, reads...)
	return b.statefulSet(name, b.args.Storage.Postgres, p, ann)
}

func (b builder) redis() error {
	const name = "redis"
	ports := map[string]int{"redis": 6379}
	if err := b.common(name, ports); err != nil {
		return err
	}
	ping := []string{"sh", "-c", "redis-cli ping | grep -q PONG"}
	c := corev1.ContainerArgs{
		Image:   pulumi.String(b.args.Images.Redis),
		Command: pulumi.StringArray{pulumi.String("redis-server")},
		// $(REDIS_PASSWORD) is expanded by the kubelet: the pod spec holds no secret.
		Args: pulumi.ToStringArray([]string{
			"--appendonly", "yes", "--appendfsync", "everysec", "--dir", "/data",
			"--maxmemory", b.args.RedisMaxMemory, "--maxmemory-policy", "noeviction",
			"--requirepass", "$(REDIS_PASSWORD)",
		}),
		Ports: containerPorts(ports),
		Env: corev1.EnvVarArray{
			kube.SecretEnv("REDIS_PASSWORD", secrets.Datastores, secrets.RedisKey),
			kube.SecretEnv("REDISCLI_AUTH", secrets.Datastores, secrets.RedisKey), // for the probes' redis-cli
		},
		VolumeMounts: corev1.VolumeMountArray{
			kube.TmpMount(),
			corev1.VolumeMountArgs{Name: pulumi.String("data"), MountPath: pulumi.String("/data")},
		},
		Resources:      kube.Size{CPURequest: "50m", MemRequest: "128Mi", CPULimit: "500m", MemLimit: "256Mi"}.Resources(),
		StartupProbe:   kube.ExecProbe(5, 30, ping...),
		ReadinessProbe: kube.ExecProbe(10, 3, ping...),
		LivenessProbe:  kube.ExecProbe(20, 3, ping...),
	}
	reads := []app.SecretRef{{Secret: secrets.Datastores, Key: secrets.RedisKey}}
	if err := b.checkChecksums(reads); err != nil {
		return err
	}
	return b.statefulSet(name, b.args.Storage.Redis, pod(name, redisUID, c, nil), b.secretsAnnotation(nil, reads...))
}

func (b builder) nats() error {
	const name = "nats"
	ports := map[string]int{"client": 4222, "monitor": 8222}
	if err := b.common(name, ports); err != nil {
		return err
	}
	c := corev1.ContainerArgs{
		Image:   pulumi.String(b.args.Images.NATS),
		Command: pulumi.StringArray{pulumi.String("nats-server")},
		Args:    pulumi.ToStringArray([]string{"--jetstream", "--store_dir", "/data", "--port", "4222", "--http_port", "8222", "--name", "pressroom"}),
		Ports:   containerPorts(ports),
		VolumeMounts: corev1.VolumeMountArray{
			kube.TmpMount(),
			corev1.VolumeMountArgs{Name: pulumi.String("data"), MountPath: pulumi.String("/data")},
		},
		Resources:      kube.Size{CPURequest: "50m", MemRequest: "64Mi", CPULimit: "500m", MemLimit: "512Mi"}.Resources(),
		StartupProbe:   kube.HTTPProbe("/healthz?js-enabled-only=true", 8222, 5, 30),
		ReadinessProbe: kube.HTTPProbe("/healthz?js-enabled-only=true", 8222, 10, 3),
		LivenessProbe:  kube.HTTPProbe("/healthz", 8222, 20, 3),
	}
	p := pod(name, natsUID, c, nil)
	p.TerminationGracePeriodSeconds = pulumi.Int(60) // lame-duck mode flushes JetStream
	return b.statefulSet(name, b.args.Storage.NATS, p, nil)
}

// Jaeger v2 (the OpenTelemetry Collector based `jaeger` binary) reads one
// config file, mounted from the jaeger-config ConfigMap.
const (
	JaegerConfigDir  = "/etc/jaeger"
	jaegerConfigFile = "config.yaml"
	// JaegerHealthPort serves healthcheckv2's /status: 200 once every
	// component started, 503 while starting or stopping.
	JaegerHealthPort = 13133
)

// Jaeger's memory is sized as one budget under its 512 MiB container limit:
//   - the trace store keeps at most jaegerMaxTraces traces. A platform trace
//     is a handful of spans (web -> one or two services -> Postgres/Redis/
//     NATS calls), budgeted at 8 spans of at most 1.5 KiB in Jaeger's
//     in-memory span model: 12 KiB a trace, so 20,000 traces <= 235 MiB;
//   - Jaeger itself (collector, query, gRPC/HTTP buffers): about 50 MiB;
//   - memory_limiter refuses new spans above 400 MiB of heap (320 MiB once
//     a spike of 80 MiB is allowed for), so a burst of oversized traces is
//     refused (the services' exporters drop them) instead of the pod being
//     OOM-killed; 235 + 50 = 285 MiB stays below its 320 MiB soft limit;
//   - GOMEMLIMIT is 90% of the limit (461 MiB), above memory_limiter's
//     400 MiB, so the limiter acts first and the runtime's GC second.
//
// The 50,000 traces of the v1 setup would have needed ~585 MiB by the same
// budget, more than the limit.
const (
	jaegerMaxTraces = 20000
	jaegerMemLimit  = "512Mi"
)

// JaegerConfig is config.yaml of the jaeger-config ConfigMap: OTLP in on
// 4317 (gRPC, what the services use) and 4318 (HTTP), an in-memory store,
// the query service and UI on 16686, healthcheckv2 on JaegerHealthPort.
// Endpoints are explicit 0.0.0.0: the collector's default is localhost.
func JaegerConfig() string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    logs:
      level: info

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 0.0.0.0:%[1]d
      status:
        enabled: true
        path: /status
  jaeger_storage:
    backends:
      traces_memory:
        memory:
          max_traces: %[2]d
  jaeger_query:
    storage:
      traces: traces_memory
    http:
      endpoint: 0.0.0.0:16686
    grpc:
      endpoint: 0.0.0.0:16685

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318

processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 400
    spike_limit_mib: 80
  batch:

exporters:
  jaeger_storage_exporter:
    trace_storage: traces_memory
`, JaegerHealthPort, jaegerMaxTraces)
}

// JaegerConfigChecksumAnnotation on Jaeger's pod template carries the
// config's SHA-256: a changed config restarts Jaeger, which reads it only
// at start.
const JaegerConfigChecksumAnnotation = "pressroom.dev/config-sha256"

func (b builder) jaeger() error {
	const name = "jaeger"
	// The UI (16686) is in the Service for port-forward only: no Ingress
	// routes to it and its NetworkPolicy admits only OTLP from the services.
	ports := map[string]int{"otlp-grpc": 4317, "otlp-http": 4318, "ui": 16686, "health": JaegerHealthPort}
	cfg, err := corev1.NewConfigMap(b.ctx, "jaeger-config", &corev1.ConfigMapArgs{
		Metadata: kube.Meta(b.ns, "jaeger-config", "datastore", nil),
		Data:     pulumi.StringMap{jaegerConfigFile: pulumi.String(JaegerConfig())},
	}, b.opts(false)...)
	if err != nil {
		return fmt.Errorf("jaeger-config configmap: %w", err)
	}
	if err := b.common(name, ports); err != nil {
		return err
	}
	size := kube.Size{CPURequest: "50m", MemRequest: "128Mi", CPULimit: "500m", MemLimit: jaegerMemLimit}
	goMem, err := size.GoMemLimit()
	if err != nil {
		return fmt.Errorf("jaeger: %w", err)
	}
	c := corev1.ContainerArgs{
		Image: pulumi.String(b.args.Images.Jaeger),
		// The image's entrypoint is the jaeger binary.
		Args:  pulumi.ToStringArray([]string{"--config", JaegerConfigDir + "/" + jaegerConfigFile}),
		Env:   corev1.EnvVarArray{kube.Env("GOMEMLIMIT", goMem)},
		Ports: containerPorts(ports),
		VolumeMounts: corev1.VolumeMountArray{
			kube.TmpMount(),
			corev1.VolumeMountArgs{Name: pulumi.String("config"), MountPath: pulumi.String(JaegerConfigDir), ReadOnly: pulumi.Bool(true)},
		},
		Resources:      size.Resources(),
		StartupProbe:   kube.HTTPProbe("/status", JaegerHealthPort, 5, 30),
		ReadinessProbe: kube.HTTPProbe("/status", JaegerHealthPort, 10, 3),
		LivenessProbe:  kube.HTTPProbe("/status", JaegerHealthPort, 20, 3),
	}
	sum := sha256.Sum256([]byte(JaegerConfig()))
	_, err = appsv1.NewDeployment(b.ctx, name, &appsv1.DeploymentArgs{
		Metadata: kube.Meta(b.ns, name, "datastore", b.annotations()),
		Spec: &appsv1.DeploymentSpecArgs{
			Replicas: pulumi.Int(1),
			Selector: &metav1.LabelSelectorArgs{MatchLabels: kube.Selector(name)},
			Strategy: &appsv1.DeploymentStrategyArgs{
				Type:          pulumi.String("RollingUpdate"),
				RollingUpdate: &appsv1.RollingUpdateDeploymentArgs{MaxUnavailable: pulumi.Int(0), MaxSurge: pulumi.Int(1)},
			},
			Template: &corev1.PodTemplateSpecArgs{
				Metadata: &metav1.ObjectMetaArgs{
					Labels:      kube.Labels(name, "datastore"),
					Annotations: pulumi.StringMap{JaegerConfigChecksumAnnotation: pulumi.String(hex.EncodeToString(sum[:]))},
				},
				Spec: pod(name, jaegerUID, c, corev1.VolumeArray{
					corev1.VolumeArgs{Name: pulumi.String("config"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{
						Name: cfg.Metadata.Name().Elem(), DefaultMode: pulumi.Int(0o444),
					}},
				}),
			},
		},
	}, b.opts(false)...)
	if err != nil {
		return fmt.Errorf("jaeger deployment: %w", err)
	}
	return nil
}
