package datastores

import (
	"strings"
	"testing"

	"pressroom.dev/infra/internal/pgtest"
	"pressroom.dev/infra/secrets"
)

// The postgres-init ConfigMap script, run for real: every service gets its
// own role and database, passwords come from the environment, a role cannot
// open another service's database, and a second run changes nothing.
func TestPostgresInitScriptCreatesIsolatedDatabases(t *testing.T) {
	pg := pgtest.Start(t)
	env := []string{"POSTGRES_USER=postgres"}
	pw := map[string]string{}
	for _, svc := range secrets.Databases {
		pw[svc] = "pw-" + svc + "-0123456789"
		env = append(env, strings.ToUpper(svc)+"_DB_PASSWORD="+pw[svc])
	}
	for run := 1; run <= 2; run++ {
		if out, err := pg.Script(t, InitScript(), env); err != nil {
			t.Fatalf("init script run %d: %v\n%s", run, err, out)
		}
	}
	for _, svc := range secrets.Databases {
		db := secrets.DatabaseName(svc)
		owner, err := pg.Psql(svc, pw[svc], db, "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
		if err != nil || owner != svc {
			t.Errorf("%s connecting to %s: owner %q, err %v", svc, db, owner, err)
		}
		if _, err := pg.Psql(svc, pw[svc], db, "CREATE TABLE t (id int); DROP TABLE t"); err != nil {
			t.Errorf("%s cannot create tables in its database: %v", svc, err)
		}
		if _, err := pg.Psql(svc, "wrong", db, "SELECT 1"); err == nil {
			t.Errorf("%s logged in with a wrong password", svc)
		}
		for _, other := range secrets.Databases {
			if other == svc {
				continue
			}
			if _, err := pg.Psql(svc, pw[svc], secrets.DatabaseName(other), "SELECT 1"); err == nil {
				t.Errorf("role %s can open %s", svc, secrets.DatabaseName(other))
			}
		}
	}
	if out, err := pg.Script(t, InitScript(), []string{"POSTGRES_USER=postgres"}); err == nil || !strings.Contains(out, "AUTH_DB_PASSWORD is not set") {
		t.Errorf("missing password: err %v, output %q; want a message naming the variable", err, out)
	}
}
