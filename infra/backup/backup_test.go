package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"pressroom.dev/infra/datastores"
	"pressroom.dev/infra/internal/pgtest"
	"pressroom.dev/stacks"
)

// mediaUID owns the media files, as the media service's image user does.
const mediaUID = 65532

// pod runs the ConfigMap's scripts the way the backup pod does: under
// busybox (the postgres alpine image's shell and tools), the dump and verify
// steps as the image's uid, the media step as the files' owner, every step
// in the backup group (the pod's fsGroup). Switching users needs root; as
// another user the scripts run as that user and only the permissions go
// unchecked.
type pod struct {
	pg      *pgtest.Server
	root    string // holds scripts, backups and media; every step may enter it
	scripts string
	path    string // busybox applets first, then the PostgreSQL client tools
	asRoot  bool
}

func newPod(t *testing.T, pg *pgtest.Server) *pod {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the backup scripts under busybox on real files; -short runs only tests that start nothing")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: install the Debian package busybox (make deps does); the backup image runs these scripts with it")
	}
	root, err := os.MkdirTemp("", "backup-pod-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	p := &pod{pg: pg, root: root, scripts: filepath.Join(root, "scripts"), asRoot: os.Geteuid() == 0}
	applets := filepath.Join(root, "bin")
	for _, d := range []string{p.scripts, applets} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "find", "cp", "ln", "mv", "mkdir", "chmod", "rm", "ls", "sort", "tail", "cut", "sha256sum", "date", "cat", "sed"} {
		if err := os.Symlink(bb, filepath.Join(applets, a)); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range ScriptFiles() {
		if err := os.WriteFile(filepath.Join(p.scripts, name), []byte(body), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range pg.Env("postgres", pg.Password) {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			p.path = applets + ":" + v
		}
	}
	if !p.asRoot {
		t.Log("not root: the scripts run as this user, so the uid and group permissions of the backup pod are not checked")
	}
	return p
}

// dir makes a directory under the pod's root.
func (p *pod) dir(t *testing.T, name string, mode os.FileMode) string {
	t.Helper()
	d := filepath.Join(p.root, name)
	if err := os.MkdirAll(d, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, mode); err != nil {
		t.Fatal(err)
	}
	return d
}

// run runs script as user, with the backup group (uid) as its group.
func (p *pod) run(t *testing.T, user int, script string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("busybox", append([]string{"sh", filepath.Join(p.scripts, script)}, args...)...)
	cmd.Env = []string{"PATH=" + p.path, "TMPDIR=" + p.dir(t, "tmp", 0o1777)}
	if script == "backup.sh" || script == "restore.sh" {
		// Only these connect; the CronJob gives the other steps no database password either.
		cmd.Env = append(cmd.Env, p.pg.Env("postgres", p.pg.Password)...)
	}
	cmd.Env = append(cmd.Env, env...)
	if p.asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(user), Gid: uid, Groups: []uint32{uid}}}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startPostgres starts a server with the four databases and roles, made by
// the datastores' setup script (setup.sh of postgres-init).
func startPostgres(t *testing.T) *pgtest.Server {
	t.Helper()
	pg := pgtest.Start(t)
	env := []string{"POSTGRES_USER=postgres", "POSTGRES_PASSWORD=" + pg.Password}
	for _, svc := range stacks.Databases {
		env = append(env, strings.ToUpper(svc)+"_DB_PASSWORD=pw-"+svc)
	}
	if out, err := pg.Script(t, datastores.SetupScript(), env); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	return pg
}

// The backup, verify and restore scripts of the ConfigMap, run for real
// against a real server: dump all four databases, prove them readable,
// expire old backups, and bring lost data back with the restore script.
func TestBackupVerifyRestoreAndRetention(t *testing.T) {
	pg := startPostgres(t)
	if _, err := pg.Psql("article", "pw-article", "article_db", "CREATE TABLE articles (id int primary key, title text); INSERT INTO articles VALUES (1, 'kept'), (2, 'also kept')"); err != nil {
		t.Fatal(err)
	}

	p := newPod(t, pg)
	dir := p.dir(t, "backups", 0o777) // local-path volumes are world-writable
	media := p.dir(t, "media", 0o750)
	p.chown(t, media)
	stale := filepath.Join(dir, "2020-01-01T0300")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	benv := []string{"BACKUP_DIR=" + dir, "RETENTION_DAYS=14", "MEDIA_DIR=" + media}
	out, err := p.run(t, uid, "backup.sh", benv)
	if err != nil {
		t.Fatalf("backup.sh: %v\n%s", err, out)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a 30-day-old backup survived a 14-day retention")
	}
	dirs, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(dirs) != 1 {
		t.Fatalf("backup directories %v, want one", dirs)
	}
	for _, svc := range stacks.Databases {
		if _, err := os.Stat(filepath.Join(dirs[0], svc+"_db.dump")); err != nil {
			t.Errorf("no dump of %s_db: %v", svc, err)
		}
	}
	if out, err := p.run(t, uid, "verify.sh", benv); err == nil || !strings.Contains(out, "no media snapshot") {
		t.Errorf("verify.sh passed a backup without its media snapshot: %v\n%s", err, out)
	}
	if out, err := p.run(t, mediaUID, "media.sh", benv); err != nil || !strings.Contains(out, "0 files copied") {
		t.Fatalf("media.sh of an empty media volume: %v\n%s", err, out)
	}
	if out, err := p.run(t, uid, "verify.sh", benv); err != nil || strings.Count(out, "verified") != 5 || !strings.Contains(out, "verified 0 media files") {
		t.Errorf("verify.sh: %v\n%s", err, out)
	}
	// A corrupt dump must fail verification.
	if err := os.WriteFile(filepath.Join(dirs[0], "media_db.dump"), []byte("not a dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.run(t, uid, "verify.sh", benv); err == nil {
		t.Errorf("verify.sh accepted a corrupt dump:\n%s", out)
	}

	if _, err := pg.Psql("article", "pw-article", "article_db", "DELETE FROM articles WHERE id = 2; INSERT INTO articles VALUES (3, 'after backup')"); err != nil {
		t.Fatal(err)
	}
	when := filepath.Base(dirs[0])
	if out, err := p.run(t, uid, "restore.sh", benv, when, "article_db"); err != nil {
		t.Fatalf("restore.sh: %v\n%s", err, out)
	}
	got, err := pg.Psql("article", "pw-article", "article_db", "SELECT string_agg(title, ',' ORDER BY id) FROM articles")
	if err != nil || got != "kept,also kept" {
		t.Errorf("after restore: %q, %v; want the backed-up rows", got, err)
	}
	owner, _ := pg.Psql("article", "pw-article", "article_db", "SELECT tableowner FROM pg_tables WHERE tablename = 'articles'")
	if owner != "article" {
		t.Errorf("restored table owned by %q, want the service role", owner)
	}
	if out, err := p.run(t, uid, "restore.sh", benv, "1999-01-01T0000", "article_db"); err == nil || !strings.Contains(out, "no dump") {
		t.Errorf("restore of a missing backup: %v %q", err, out)
	}
}

// chown gives path to the media files' owner, as the media service leaves them.
func (p *pod) chown(t *testing.T, path string) {
	t.Helper()
	if !p.asRoot {
		return
	}
	if err := os.Chown(path, mediaUID, mediaUID); err != nil {
		t.Fatal(err)
	}
}

// publish writes a media file as the media service does: <root>/<2 hex>/<sha256>.<ext>,
// mode 0600 in 0750 directories, owned by the service's uid.
func (p *pod) publish(t *testing.T, media string, body string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(body))
	name := hex.EncodeToString(sum[:]) + ".png"
	shard := filepath.Join(media, name[:2])
	if err := os.MkdirAll(shard, 0o750); err != nil {
		t.Fatal(err)
	}
	p.chown(t, shard)
	f := filepath.Join(shard, name)
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p.chown(t, f)
	return filepath.Join(name[:2], name)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// The media snapshot: every published file copied (uploads in progress
// left out), readable by the verify step, checked against its name,
// hard-linked into the next snapshot when unchanged, expired by the dump
// step's retention, and restored by restore-media.sh.
func TestMediaSnapshotVerifyRestoreAndRetention(t *testing.T) {
	pg := startPostgres(t)
	p := newPod(t, pg)
	dir := p.dir(t, "backups", 0o777)
	media := p.dir(t, "media", 0o750)
	p.chown(t, media)
	benv := []string{"BACKUP_DIR=" + dir, "RETENTION_DAYS=14", "MEDIA_DIR=" + media}

	a := p.publish(t, media, "first image")
	b := p.publish(t, media, "second image")
	gone := p.publish(t, media, "deleted before the second snapshot")
	upload := filepath.Join(media, ".tmp", "upload-123")
	if err := os.MkdirAll(filepath.Dir(upload), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upload, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.chown(t, filepath.Dir(upload))
	p.chown(t, upload)

	// The first snapshot: a dated directory as the dump step makes it.
	first := filepath.Join(dir, "2026-01-01T0300")
	if out, err := p.run(t, uid, "media.sh", benv); err == nil || !strings.Contains(out, "no backup directory") {
		t.Errorf("media.sh without a backup directory: %v %q", err, out)
	}
	if out, err := p.run(t, uid, "backup.sh", benv); err != nil {
		t.Fatalf("backup.sh: %v\n%s", err, out)
	}
	made, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(made) != 1 {
		t.Fatalf("backup directories %v, want one", made)
	}
	if err := os.Rename(made[0], first); err != nil {
		t.Fatal(err)
	}
	out, err := p.run(t, mediaUID, "media.sh", benv)
	if err != nil || !strings.Contains(out, "3 files copied, 0 linked") {
		t.Fatalf("first media.sh: %v\n%s", err, out)
	}
	for _, rel := range []string{a, b, gone} {
		if _, err := os.Stat(filepath.Join(first, "media", rel)); err != nil {
			t.Errorf("first snapshot lacks %s: %v", rel, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(first, "media", "*", "upload-*")); len(left) > 0 {
		t.Errorf("an upload in progress was snapshotted: %v", left)
	}
	if _, err := os.Stat(filepath.Join(first, "media.partial")); !os.IsNotExist(err) {
		t.Errorf("media.partial left behind: %v", err)
	}
	if out, err := p.run(t, mediaUID, "media.sh", benv); err != nil || !strings.Contains(out, "exists") {
		t.Errorf("a retried media.sh must keep the finished snapshot: %v\n%s", err, out)
	}
	if out, err := p.run(t, uid, "verify.sh", benv); err != nil || !strings.Contains(out, "verified 3 media files") {
		t.Errorf("verify.sh of the first snapshot: %v\n%s", err, out)
	}

	// The second snapshot links what it already has and copies what is new.
	if err := os.Remove(filepath.Join(media, gone)); err != nil {
		t.Fatal(err)
	}
	c := p.publish(t, media, "third image")
	if out, err := p.run(t, uid, "backup.sh", benv); err != nil {
		t.Fatalf("second backup.sh: %v\n%s", err, out)
	}
	out, err = p.run(t, mediaUID, "media.sh", benv)
	if err != nil || !strings.Contains(out, "1 files copied, 2 linked") {
		t.Fatalf("second media.sh: %v\n%s", err, out)
	}
	made, _ = filepath.Glob(filepath.Join(dir, "2*"))
	second := made[len(made)-1]
	if second == first {
		t.Fatalf("no second backup directory in %v", made)
	}
	for _, rel := range []string{a, b} {
		if inode(t, filepath.Join(first, "media", rel)) != inode(t, filepath.Join(second, "media", rel)) {
			t.Errorf("%s was copied again instead of linked from the first snapshot", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(second, "media", gone)); !os.IsNotExist(err) {
		t.Errorf("a file deleted before the second snapshot is in it: %v", err)
	}
	if out, err := p.run(t, uid, "verify.sh", benv); err != nil || !strings.Contains(out, "verified 3 media files") {
		t.Errorf("verify.sh of the second snapshot: %v\n%s", err, out)
	}

	// Restore the second snapshot over a volume that lost one file and holds
	// another with the wrong bytes; a file added since is kept.
	if err := os.Remove(filepath.Join(media, a)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(media, c), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := p.publish(t, media, "uploaded after the backup")
	when := filepath.Base(second)
	out, err = p.run(t, mediaUID, "restore-media.sh", benv, when)
	if err != nil || !strings.Contains(out, "restored 2 media files") || !strings.Contains(out, "1 were already in place") {
		t.Fatalf("restore-media.sh: %v\n%s", err, out)
	}
	for rel, want := range map[string]string{a: "first image", b: "second image", c: "third image", later: "uploaded after the backup"} {
		if got, err := os.ReadFile(filepath.Join(media, rel)); err != nil || string(got) != want {
			t.Errorf("after restore %s holds %q (%v), want %q", rel, got, err, want)
		}
	}
	if out, err := p.run(t, mediaUID, "restore-media.sh", benv, "1999-01-01T0000"); err == nil || !strings.Contains(out, "no media snapshot") {
		t.Errorf("restore of a missing snapshot: %v %q", err, out)
	}

	// Bytes that no longer match their name fail verification and restore.
	victim := filepath.Join(second, "media", c)
	if err := os.Remove(victim); err != nil { // a new inode: the first snapshot keeps its copy
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := p.run(t, uid, "verify.sh", benv); err == nil || !strings.Contains(out, "corrupt") {
		t.Errorf("verify.sh accepted a corrupt media file: %v\n%s", err, out)
	}
	if err := os.Remove(filepath.Join(media, c)); err != nil {
		t.Fatal(err)
	}
	if out, err := p.run(t, mediaUID, "restore-media.sh", benv, when); err == nil || !strings.Contains(out, "corrupt") {
		t.Errorf("restore-media.sh restored a corrupt file: %v\n%s", err, out)
	}

	// Retention (the dump step, another uid) removes an expired snapshot the media step wrote.
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(first, old, old); err != nil {
		t.Fatal(err)
	}
	if out, err := p.run(t, uid, "backup.sh", benv); err != nil {
		t.Fatalf("backup.sh with an expired snapshot: %v\n%s", err, out)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("the 30-day-old backup with its media snapshot survived retention: %v", err)
	}
	if _, err := os.Stat(filepath.Join(second, "media", a)); err != nil {
		t.Errorf("expiring the first snapshot took a linked file from the second: %v", err)
	}
}

// A schedule passes only if Kubernetes' own cron parser takes it: the old
// five-field pattern let "99 99 99 99 99" through to the API server and
// refused "@daily".
func TestScheduleAsKubernetesParsesIt(t *testing.T) {
	for _, ok := range []string{"0 3 * * *", "0 3 * * MON", "@daily", "*/15 2-4 * * mon-fri"} {
		if err := checkSchedule(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"99 99 99 99 99", "60 25 32 13 8", "- - - - -", "0 3 * *", "CRON_TZ=UTC 0 3 * * *", ""} {
		if err := checkSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A new pod's first connections can be refused (Postgres restarting, or the
// node's NetworkPolicy controller not yet admitting the pod): backup.sh and
// restore.sh wait for the server, and say so when it never comes.
func TestBackupWaitsForTheServer(t *testing.T) {
	pg := startPostgres(t)
	p := newPod(t, pg)
	dir := p.dir(t, "backups", 0o777)
	port := closedPort(t)
	benv := []string{"BACKUP_DIR=" + dir, "RETENTION_DAYS=14", "PGPORT=" + port, "PG_WAIT_SECONDS=4"}
	if out, err := p.run(t, uid, "backup.sh", benv); err == nil || !strings.Contains(out, "did not accept connections within 4s") {
		t.Fatalf("backup.sh with no server: %v\n%s", err, out)
	}

	benv[len(benv)-1] = "PG_WAIT_SECONDS=60"
	opened := relayLater(t, port, pg.Port)
	out, err := p.run(t, uid, "backup.sh", benv)
	<-opened
	if err != nil || strings.Count(out, "dumped ") != len(stacks.Databases) {
		t.Fatalf("backup.sh once the server answers: %v\n%s", err, out)
	}

	// restore.sh runs as a Job with no second try: it waits the same way.
	m := regexp.MustCompile(`dumped article_db to .*/([0-9T-]+)/article_db\.dump`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no backup directory in backup.sh's output:\n%s", out)
	}
	port = closedPort(t)
	renv := []string{"BACKUP_DIR=" + dir, "PGPORT=" + port, "PG_WAIT_SECONDS=4"}
	if out, err := p.run(t, uid, "restore.sh", renv, m[1], "article_db"); err == nil || !strings.Contains(out, "did not accept connections within 4s") {
		t.Fatalf("restore.sh with no server: %v\n%s", err, out)
	}
	renv[len(renv)-1] = "PG_WAIT_SECONDS=60"
	reopened := relayLater(t, port, pg.Port)
	out, err = p.run(t, uid, "restore.sh", renv, m[1], "article_db")
	<-reopened
	if err != nil || !strings.Contains(out, "restored article_db") {
		t.Fatalf("restore.sh once the server answers: %v\n%s", err, out)
	}
}

// closedPort is a loopback port nothing listens on (refused until
// relayLater opens it).
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

// relayLater opens port after the refused phase a script must outlast (3 s)
// and relays it to Postgres on pgPort; the channel closes once it is open.
func relayLater(t *testing.T, port string, pgPort int) <-chan struct{} {
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		time.Sleep(3 * time.Second)
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { l.Close() })
		go relay(l, fmt.Sprintf("127.0.0.1:%d", pgPort))
	}()
	return opened
}

// relay forwards every connection of l to addr.
func relay(l net.Listener, addr string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer u.Close()
			go io.Copy(u, c)
			io.Copy(c, u)
		}()
	}
}
