package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pressroom.dev/infra/datastores"
	"pressroom.dev/infra/internal/pgtest"
	"pressroom.dev/infra/secrets"
)

// The backup, verify and restore scripts of the ConfigMap, run for real
// against a real server: dump all four databases, prove them readable,
// expire old backups, and bring lost data back with the restore script.
func TestBackupVerifyRestoreAndRetention(t *testing.T) {
	pg := pgtest.Start(t)
	env := []string{"POSTGRES_USER=postgres"}
	for _, svc := range secrets.Databases {
		env = append(env, strings.ToUpper(svc)+"_DB_PASSWORD=pw-"+svc)
	}
	if out, err := pg.Script(t, datastores.InitScript(), env); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if _, err := pg.Psql("article", "pw-article", "article_db", "CREATE TABLE articles (id int primary key, title text); INSERT INTO articles VALUES (1, 'kept'), (2, 'also kept')"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "2020-01-01T0300")
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	files := ScriptFiles()
	benv := []string{"BACKUP_DIR=" + dir, "RETENTION_DAYS=14"}
	out, err := pg.Script(t, files["backup.sh"], benv)
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
	for _, svc := range secrets.Databases {
		if _, err := os.Stat(filepath.Join(dirs[0], svc+"_db.dump")); err != nil {
			t.Errorf("no dump of %s_db: %v", svc, err)
		}
	}
	if out, err := pg.Script(t, files["verify.sh"], benv); err != nil || strings.Count(out, "verified") != 4 {
		t.Errorf("verify.sh: %v\n%s", err, out)
	}
	// A corrupt dump must fail verification.
	if err := os.WriteFile(filepath.Join(dirs[0], "media_db.dump"), []byte("not a dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pg.Script(t, files["verify.sh"], benv); err == nil {
		t.Errorf("verify.sh accepted a corrupt dump:\n%s", out)
	}

	if _, err := pg.Psql("article", "pw-article", "article_db", "DELETE FROM articles WHERE id = 2; INSERT INTO articles VALUES (3, 'after backup')"); err != nil {
		t.Fatal(err)
	}
	when := filepath.Base(dirs[0])
	if out, err := pg.Script(t, files["restore.sh"], benv, when, "article_db"); err != nil {
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
	if out, err := pg.Script(t, files["restore.sh"], benv, "1999-01-01T0000", "article_db"); err == nil || !strings.Contains(out, "no dump") {
		t.Errorf("restore of a missing backup: %v %q", err, out)
	}
}
