// Package backup schedules a nightly pg_dump of every database and a
// snapshot of the media files to a backups PVC with retention, verifies
// each dump is readable and each media file's bytes match its name, and
// ships restore scripts for the documented restore Jobs
// (infra/OPERATIONS.md, "Restore a database" and "Restore media").
package backup

import (
	"fmt"
	"strings"

	batchv1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/batch/v1"
	corev1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/core/v1"
	metav1 "github.com/pulumi/pulumi-kubernetes/sdk/v4/go/kubernetes/meta/v1"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"pressroom.dev/infra/kube"
	"pressroom.dev/infra/netpol"
	"pressroom.dev/infra/secrets"
	"pressroom.dev/stacks"
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
	Schedule      string // cron; empty: stacks.Defaults
	RetentionDays int    // empty: stacks.Defaults
	Size          string // PVC size; empty: stacks.Defaults
	Protect       bool
	SkipAwait     bool
	NodeSelector  map[string]string // the data node, as for the datastores
	MediaClaim    string            // the media files' PVC, mounted read-only for the snapshot
	MediaUID      int               // the uid that owns the media files (the media service's)
}

// Backup is the component.
type Backup struct {
	pulumi.ResourceState

	Schedule pulumi.StringOutput `pulumi:"schedule"`
	Claim    pulumi.StringOutput `pulumi:"claim"`
}

// BackupScript dumps every database (custom format) into a dated directory,
// then removes directories older than the retention.
const backupScript = `# Connection from PGHOST/PGPASSWORD (env); dumps go to BACKUP_DIR.
wait_for_postgres
dir="$root/$(date -u +%%Y-%%m-%%dT%%H%%M)"
mkdir -p "$dir"
chmod 0775 "$dir" # the media step (another uid, same group) writes its snapshot here
for db in %s; do
  pg_dump --username=postgres --format=custom --file="$dir/$db.dump.partial" "$db"
  mv "$dir/$db.dump.partial" "$dir/$db.dump"
  echo "dumped $db to $dir/$db.dump"
done
find "$root" -mindepth 1 -maxdepth 1 -type d -mtime +"${RETENTION_DAYS:?}" -print -exec rm -rf {} +
`

// prelude starts every script: strict mode, the backups root, and the
// helpers. A media file's name is the SHA-256 of its bytes and its
// extension, in a directory named by the hash's first two digits; uploads
// in progress live in .tmp.
const prelude = `#!/bin/sh
set -eu
root="${BACKUP_DIR:-/backups}"
# wait_for_postgres: Postgres may be restarting, and a new pod's first
# connections are refused until the node's NetworkPolicy controller has
# admitted its address (a few seconds on K3s): wait for the server instead
# of failing the Job (a restore Job has no second try).
wait_for_postgres() {
  waited=0
  until pg_isready --quiet --timeout=5; do
    waited=$((waited+2))
    [ "$waited" -le "${PG_WAIT_SECONDS:-120}" ] || { echo "postgres at ${PGHOST:-the socket} did not accept connections within ${PG_WAIT_SECONDS:-120}s"; exit 1; }
    sleep 2
  done
}
# newest prints the newest backup directory (names sort by time), or nothing.
newest() { ls -1d "$root"/*/ 2>/dev/null | sort | tail -n 1 | sed 's|/$||'; }
# published lists a media tree's files as <2 hex digits>/<name>, sorted.
published() { (cd "$1" && find . -mindepth 2 -maxdepth 2 -type f -path './??/*') | sed 's|^\./||' | sort; }
# intact: the file's bytes hash to the SHA-256 that starts its name.
intact() {
  name="${1##*/}"
  sum="$(sha256sum < "$1" | cut -d' ' -f1)"
  [ "$sum" = "${name%%.*}" ] || { echo "$1 is corrupt: its bytes hash to $sum"; return 1; }
}
`

// verifyScript lists each dump's table of contents and checks every media
// file's bytes against its name: anything unreadable fails the Job.
const verifyScript = `latest="$(newest)/"
n=0
for f in "$latest"*.dump; do
  pg_restore --list "$f" > /dev/null
  echo "verified $f"
  n=$((n+1))
done
[ "$n" -gt 0 ] || { echo "no dumps in $latest"; exit 1; }
[ -d "${latest}media" ] || { echo "no media snapshot in $latest"; exit 1; }
list="${TMPDIR:-/tmp}/verify-media.list"
find "${latest}media" -type f > "$list" # every file: a stray one fails too
m=0
while IFS= read -r f; do
  intact "$f" || exit 1
  m=$((m+1))
done < "$list"
rm -f "$list"
echo "verified $m media files in ${latest}media"
`

// mediaScript snapshots the published media files into the newest backup
// directory (made by the dump step). Files are content-addressed (the name
// is the SHA-256 of the bytes, never rewritten), so a file the previous
// snapshot holds is hard-linked from it: every snapshot is complete on its
// own and only new files take space. Runs as the files' owner with the
// backup group, so the other steps can read and expire what it writes.
const mediaScript = `umask 002
src="${MEDIA_DIR:-/media}"
dir="$(newest)"
[ -n "$dir" ] || { echo "no backup directory in $root: the dump step makes it first"; exit 1; }
if [ -d "$dir/media" ]; then echo "$dir/media exists (a retried job): kept"; exit 0; fi
prev="$(ls -1d "$root"/*/media 2>/dev/null | sort | tail -n 1)"
tmp="$dir/media.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
list="${TMPDIR:-/tmp}/media.list"
published "$src" > "$list"
new=0
linked=0
while IFS= read -r rel; do
  mkdir -p "$tmp/${rel%/*}"
  if [ -n "$prev" ] && [ -f "$prev/$rel" ] && ln "$prev/$rel" "$tmp/$rel" 2>/dev/null; then
    linked=$((linked+1))
    continue
  fi
  if ! cp "$src/$rel" "$tmp/$rel.part"; then
    rm -f "$tmp/$rel.part"
    # Deleted by the media service since the listing: not part of this snapshot.
    [ -e "$src/$rel" ] && exit 1
    continue
  fi
  chmod 0640 "$tmp/$rel.part"
  mv "$tmp/$rel.part" "$tmp/$rel"
  new=$((new+1))
done < "$list"
rm -f "$list"
mv "$tmp" "$dir/media"
echo "media snapshot $dir/media: $new files copied, $linked linked from ${prev:-no earlier snapshot}"
`

// restoreMediaScript puts back every file of one snapshot that the media
// volume lacks or holds with other bytes, each written beside its final
// name and renamed, as the media service publishes. Files added since the
// snapshot are kept: restore media_db from the same backup to match.
// restore-media.sh <YYYY-MM-DDTHHMM>
const restoreMediaScript = `umask 027
dst="${MEDIA_DIR:-/media}"
when="${1:?usage: restore-media.sh <backup dir name, e.g. 2026-01-31T0300>}"
snap="$root/$when/media"
[ -d "$snap" ] || { echo "no media snapshot $snap; available: $(ls "$root")"; exit 1; }
mkdir -p "$dst/.tmp"
list="${TMPDIR:-/tmp}/restore-media.list"
published "$snap" > "$list"
restored=0
kept=0
while IFS= read -r rel; do
  name="${rel##*/}"
  if [ -f "$dst/$rel" ] && intact "$dst/$rel" > /dev/null; then
    kept=$((kept+1))
    continue
  fi
  intact "$snap/$rel" || exit 1
  mkdir -p "$dst/${rel%/*}"
  cp "$snap/$rel" "$dst/.tmp/restore-$name"
  mv "$dst/.tmp/restore-$name" "$dst/$rel"
  restored=$((restored+1))
done < "$list"
rm -f "$list"
echo "restored $restored media files from $snap; $kept were already in place"
`

// restoreScript restores one database from a backup directory:
// restore.sh <YYYY-MM-DDTHHMM> <database>
const restoreScript = `when="${1:?usage: restore.sh <backup dir name, e.g. 2026-01-31T0300> <database, e.g. article_db>}"
db="${2:?usage: restore.sh <backup dir name> <database>}"
f="$root/$when/$db.dump"
[ -f "$f" ] || { echo "no dump $f; available: $(ls "$root")"; exit 1; }
wait_for_postgres
pg_restore --username=postgres --dbname="$db" --clean --if-exists --no-owner --role="${db%%_db}" --exit-on-error "$f"
echo "restored $db from $f"
`

// ScriptFiles is the content of the backup-scripts ConfigMap.
func ScriptFiles() map[string]string {
	dbs := make([]string, 0, len(stacks.Databases))
	for _, s := range stacks.Databases {
		dbs = append(dbs, secrets.DatabaseName(s))
	}
	return map[string]string{
		"backup.sh":        prelude + fmt.Sprintf(backupScript, strings.Join(dbs, " ")),
		"verify.sh":        prelude + verifyScript,
		"media.sh":         prelude + mediaScript,
		"restore.sh":       prelude + restoreScript,
		"restore-media.sh": prelude + restoreMediaScript,
	}
}

// checkSchedule: what passes, the API server accepts as a CronJob schedule.
func checkSchedule(schedule string) error {
	if err := stacks.CheckCronSchedule(schedule); err != nil {
		return fmt.Errorf("backup: schedule %q %v", schedule, err)
	}
	return nil
}

// NewBackup creates the PVC, scripts, ServiceAccount, CronJob and NetworkPolicy.
func NewBackup(ctx *pulumi.Context, name string, args *BackupArgs, opts ...pulumi.ResourceOption) (*Backup, error) {
	if args == nil || args.Namespace == nil {
		return nil, fmt.Errorf("backup: Namespace is required")
	}
	a := *args
	def := stacks.Defaults("")
	if a.Schedule == "" {
		a.Schedule = def.Backup.Schedule
	}
	if a.RetentionDays == 0 {
		a.RetentionDays = def.Backup.RetentionDays
	}
	if a.Size == "" {
		a.Size = def.Storage.Backups
	}
	if err := checkSchedule(a.Schedule); err != nil {
		return nil, err
	}
	if a.RetentionDays < 1 {
		return nil, fmt.Errorf("backup: retention of %d days must be at least 1", a.RetentionDays)
	}
	if a.MediaClaim == "" || a.MediaUID <= 0 {
		return nil, fmt.Errorf("backup: MediaClaim and MediaUID (the media files' claim and owner) are required, got %q and %d", a.MediaClaim, a.MediaUID)
	}
	if err := stacks.CheckImageRef(a.Image); err != nil {
		return nil, fmt.Errorf("backup: the image %w", err)
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
	container := func(n, script string, env corev1.EnvVarArray, mounts corev1.VolumeMountArray, sec *corev1.SecurityContextArgs) corev1.ContainerArgs {
		return corev1.ContainerArgs{
			Name:            pulumi.String(n),
			Image:           pulumi.String(a.Image),
			ImagePullPolicy: pulumi.String("IfNotPresent"),
			Command:         pulumi.StringArray{pulumi.String("/bin/sh"), pulumi.String("/scripts/" + script)},
			Env:             env,
			VolumeMounts:    mounts,
			Resources:       kube.Size{CPURequest: "50m", MemRequest: "64Mi", CPULimit: "500m", MemLimit: "256Mi"}.Resources(),
			SecurityContext: sec,
		}
	}
	pgEnv := corev1.EnvVarArray{
		kube.Env("PGHOST", "postgres"),
		kube.SecretEnv("PGPASSWORD", secrets.Datastores, secrets.PostgresKey),
		kube.Env("RETENTION_DAYS", fmt.Sprint(a.RetentionDays)),
	}
	// The media step reads files only their owner may read (0600), so it runs
	// as that uid; its group is the backup group, so verify and retention can
	// read and delete its snapshot. It gets no database password.
	mediaSec := kube.ContainerSecurity()
	mediaSec.RunAsUser = pulumi.Int(a.MediaUID)
	mediaSec.RunAsGroup = pulumi.Int(uid)
	mediaMounts := append(corev1.VolumeMountArray{
		corev1.VolumeMountArgs{Name: pulumi.String("media"), MountPath: pulumi.String("/media"), ReadOnly: pulumi.Bool(true)},
	}, mounts...)
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
							// dump and snapshot first (init), then prove both are readable.
							InitContainers: corev1.ContainerArray{
								container("dump", "backup.sh", pgEnv, mounts, kube.ContainerSecurity()),
								container("media", "media.sh", nil, mediaMounts, mediaSec),
							},
							// verify reads files only (pg_restore --list never connects): no password.
							Containers: corev1.ContainerArray{container("verify", "verify.sh", nil, mounts, kube.ContainerSecurity())},
							Volumes: corev1.VolumeArray{
								kube.TmpVolume("64Mi"),
								corev1.VolumeArgs{Name: pulumi.String("backups"), PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSourceArgs{ClaimName: pulumi.String(Claim)}},
								corev1.VolumeArgs{Name: pulumi.String("media"), PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSourceArgs{ClaimName: pulumi.String(a.MediaClaim), ReadOnly: pulumi.Bool(true)}},
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
