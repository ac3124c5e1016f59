// Package backup schedules a nightly pg_dump of every database to a backups
// PVC with retention, verifies each dump is readable, and ships a restore
// script for the documented restore Job (README, Day-2 operations).
package backup

import (
	"fmt"
	"regexp"
	"strings"

	batchv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/batch/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
	"pressroom.dev/infra/netpol"
	"pressroom.dev/infra/secrets"
)

// Object names.
const (
	Name    = "backup"         // CronJob, ServiceAccount, pod label (netpol endpoint)
	Claim   = "backups"        // PVC
	Scripts = "backup-scripts" // ConfigMap
)

// uid of the postgres alpine image, which provides pg_dump/pg_restore.
const uid = 70

// BackupArgs configures the backups.
type BackupArgs struct {
	Namespace     pulumi.StringInput
	Image         string // a postgres image pinned by digest (same major as the server)
	Schedule      string // cron, default "0 3 * * *"
	RetentionDays int    // default 14
	Size          string // PVC size, default 10Gi
	Protect       bool
	SkipAwait     bool
	NodeSelector  map[string]string // the data node, as for the datastores
}

// Backup is the component.
type Backup struct {
	pulumi.ResourceState

	Schedule pulumi.StringOutput `pulumi:"schedule"`
	Claim    pulumi.StringOutput `pulumi:"claim"`
}

// BackupScript dumps every database (custom format) into a dated directory,
// then removes directories older than the retention.
const backupScript = `#!/bin/sh
# Connection from PGHOST/PGPASSWORD (env); dumps go to BACKUP_DIR.
set -eu
root="${BACKUP_DIR:-/backups}"
dir="$root/$(date -u +%%Y-%%m-%%dT%%H%%M)"
mkdir -p "$dir"
for db in %s; do
  pg_dump --username=postgres --format=custom --file="$dir/$db.dump.partial" "$db"
  mv "$dir/$db.dump.partial" "$dir/$db.dump"
  echo "dumped $db to $dir/$db.dump"
done
find "$root" -mindepth 1 -maxdepth 1 -type d -mtime +"${RETENTION_DAYS:?}" -print -exec rm -rf {} +
`

// verifyScript lists each dump's table of contents: an unreadable dump fails the Job.
const verifyScript = `#!/bin/sh
set -eu
root="${BACKUP_DIR:-/backups}"
latest="$(ls -1d "$root"/*/ | sort | tail -n 1)"
n=0
for f in "$latest"*.dump; do
  pg_restore --list "$f" > /dev/null
  echo "verified $f"
  n=$((n+1))
done
[ "$n" -gt 0 ] || { echo "no dumps in $latest"; exit 1; }
`

// restoreScript restores one database from a backup directory:
// restore.sh <YYYY-MM-DDTHHMM> <database>
const restoreScript = `#!/bin/sh
set -eu
root="${BACKUP_DIR:-/backups}"
when="${1:?usage: restore.sh <backup dir name, e.g. 2026-01-31T0300> <database, e.g. article_db>}"
db="${2:?usage: restore.sh <backup dir name> <database>}"
f="$root/$when/$db.dump"
[ -f "$f" ] || { echo "no dump $f; available: $(ls "$root")"; exit 1; }
pg_restore --username=postgres --dbname="$db" --clean --if-exists --no-owner --role="${db%%_db}" --exit-on-error "$f"
echo "restored $db from $f"
`

// ScriptFiles is the content of the backup-scripts ConfigMap.
func ScriptFiles() map[string]string {
	dbs := make([]string, 0, len(secrets.Databases))
	for _, s := range secrets.Databases {
		dbs = append(dbs, secrets.DatabaseName(s))
	}
	return map[string]string{
		"backup.sh":  fmt.Sprintf(backupScript, strings.Join(dbs, " ")),
		"verify.sh":  verifyScript,
		"restore.sh": restoreScript,
	}
}

var cronRE = regexp.MustCompile(`^(\S+\s+){4}\S+$`)

// NewBackup creates the PVC, scripts, ServiceAccount, CronJob and NetworkPolicy.
func NewBackup(ctx *pulumi.Context, name string, args *BackupArgs, opts ...pulumi.ResourceOption) (*Backup, error) {
	if args == nil || args.Namespace == nil {
		return nil, fmt.Errorf("backup: Namespace is required")
	}
	a := *args
	if a.Schedule == "" {
		a.Schedule = "0 3 * * *"
	}
	if a.RetentionDays == 0 {
		a.RetentionDays = 14
	}
	if a.Size == "" {
		a.Size = "10Gi"
	}
	if !cronRE.MatchString(a.Schedule) {
		return nil, fmt.Errorf("backup: schedule %q is not a five-field cron expression such as \"0 3 * * *\"", a.Schedule)
	}
	if a.RetentionDays < 1 {
		return nil, fmt.Errorf("backup: retention of %d days must be at least 1", a.RetentionDays)
	}
	if !strings.Contains(a.Image, "@sha256:") {
		return nil, fmt.Errorf("backup: image %q must be pinned by digest", a.Image)
	}
	b := &Backup{}
	if err := ctx.RegisterComponentResource("pressroom:backup:Backup", name, b, opts...); err != nil {
		return nil, err
	}
	ns := a.Namespace
	child := kube.Child(b)
	stateful := child
	if a.Protect {
		stateful = kube.Child(b, pulumi.Protect(true))
	}
	pvcAnn := map[string]string{kube.SkipAwaitAnnotation: "true"} // bound on first use (WaitForFirstConsumer)
	if _, err := corev1.NewPersistentVolumeClaim(ctx, Claim, &corev1.PersistentVolumeClaimArgs{
		Metadata: kube.Meta(ns, Claim, "backup", pvcAnn),
		Spec: &corev1.PersistentVolumeClaimSpecArgs{
			AccessModes: pulumi.StringArray{pulumi.String("ReadWriteOnce")},
			Resources:   &corev1.VolumeResourceRequirementsArgs{Requests: pulumi.StringMap{"storage": pulumi.String(a.Size)}},
		},
	}, stateful...); err != nil {
		return nil, fmt.Errorf("backups claim: %w", err)
	}
	if _, err := corev1.NewConfigMap(ctx, Scripts, &corev1.ConfigMapArgs{
		Metadata: kube.Meta(ns, Scripts, "backup", nil),
		Data:     pulumi.ToStringMap(ScriptFiles()),
	}, child...); err != nil {
		return nil, fmt.Errorf("backup scripts: %w", err)
	}
	if _, err := corev1.NewServiceAccount(ctx, Name, &corev1.ServiceAccountArgs{
		Metadata:                     kube.Meta(ns, Name, "backup", nil),
		AutomountServiceAccountToken: pulumi.Bool(false),
	}, child...); err != nil {
		return nil, fmt.Errorf("backup service account: %w", err)
	}
	if _, err := netpol.NewPolicy(ctx, ns, Name, child...); err != nil {
		return nil, fmt.Errorf("backup network policy: %w", err)
	}

	mounts := corev1.VolumeMountArray{
		kube.TmpMount(),
		corev1.VolumeMountArgs{Name: pulumi.String("backups"), MountPath: pulumi.String("/backups")},
		corev1.VolumeMountArgs{Name: pulumi.String("scripts"), MountPath: pulumi.String("/scripts"), ReadOnly: pulumi.Bool(true)},
	}
	container := func(n, script string) corev1.ContainerArgs {
		return corev1.ContainerArgs{
			Name:            pulumi.String(n),
			Image:           pulumi.String(a.Image),
			ImagePullPolicy: pulumi.String("IfNotPresent"),
			Command:         pulumi.StringArray{pulumi.String("/bin/sh"), pulumi.String("/scripts/" + script)},
			Env: corev1.EnvVarArray{
				kube.Env("PGHOST", "postgres"),
				kube.SecretEnv("PGPASSWORD", secrets.Datastores, secrets.PostgresKey),
				kube.Env("RETENTION_DAYS", fmt.Sprint(a.RetentionDays)),
			},
			VolumeMounts:    mounts,
			Resources:       kube.Size{CPURequest: "50m", MemRequest: "64Mi", CPULimit: "500m", MemLimit: "256Mi"}.Resources(),
			SecurityContext: kube.ContainerSecurity(),
		}
	}
	ann := map[string]string(nil)
	if a.SkipAwait {
		ann = map[string]string{kube.SkipAwaitAnnotation: "true"}
	}
	if _, err := batchv1.NewCronJob(ctx, Name, &batchv1.CronJobArgs{
		Metadata: kube.Meta(ns, Name, "backup", ann),
		Spec: &batchv1.CronJobSpecArgs{
			Schedule:                   pulumi.String(a.Schedule),
			ConcurrencyPolicy:          pulumi.String("Forbid"),
			SuccessfulJobsHistoryLimit: pulumi.Int(3),
			FailedJobsHistoryLimit:     pulumi.Int(3),
			JobTemplate: &batchv1.JobTemplateSpecArgs{
				Spec: &batchv1.JobSpecArgs{
					BackoffLimit:          pulumi.Int(2),
					ActiveDeadlineSeconds: pulumi.Int(3600),
					Template: &corev1.PodTemplateSpecArgs{
						Metadata: &metav1.ObjectMetaArgs{Labels: kube.Labels(Name, "backup")},
						Spec: &corev1.PodSpecArgs{
							ServiceAccountName:           pulumi.String(Name),
							AutomountServiceAccountToken: pulumi.Bool(false),
							RestartPolicy:                pulumi.String("OnFailure"),
							NodeSelector:                 nodeSelector(args.NodeSelector),
							SecurityContext:              kube.PodSecurity(uid),
							// dump first (init), then prove the dumps are readable.
							InitContainers: corev1.ContainerArray{container("dump", "backup.sh")},
							Containers:     corev1.ContainerArray{container("verify", "verify.sh")},
							Volumes: corev1.VolumeArray{
								kube.TmpVolume("64Mi"),
								corev1.VolumeArgs{Name: pulumi.String("backups"), PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSourceArgs{ClaimName: pulumi.String(Claim)}},
								corev1.VolumeArgs{Name: pulumi.String("scripts"), ConfigMap: &corev1.ConfigMapVolumeSourceArgs{Name: pulumi.String(Scripts), DefaultMode: pulumi.Int(0o555)}},
							},
						},
					},
				},
			},
		},
	}, child...); err != nil {
		return nil, fmt.Errorf("backup cronjob: %w", err)
	}
	b.Schedule = pulumi.String(a.Schedule).ToStringOutput()
	b.Claim = pulumi.String(Claim).ToStringOutput()
	if err := ctx.RegisterResourceOutputs(b, pulumi.Map{"schedule": b.Schedule, "claim": b.Claim}); err != nil {
		return nil, err
	}
	return b, nil
}

// nodeSelector is nil when empty so single-node stacks render no selector.
func nodeSelector(m map[string]string) pulumi.StringMapInput {
	if len(m) == 0 {
		return nil
	}
	return pulumi.ToStringMap(m)
}
