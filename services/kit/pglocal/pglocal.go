// Package pglocal finds this machine's PostgreSQL server programs and the
// user to run them as: the one way the tests (kit/testkit, infra's pgtest)
// and `make dev` (tools/devlaunch) start a local PostgreSQL.
package pglocal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// BinEnv names a directory of PostgreSQL programs to use instead of the
// newest Debian installs.
const BinEnv = "PRESSROOM_PG_BIN"

// BinDir is the directory holding initdb, postgres, pg_ctl and psql: $BinEnv,
// else the newest major under /usr/lib/postgresql (Debian's layout), else
// the directory of initdb on PATH.
func BinDir() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("%s=%s holds no initdb: point it at a PostgreSQL bin directory or unset it to use the Debian package postgresql", BinEnv, d)
		}
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		sort.Slice(matches, func(i, j int) bool { return Major(matches[i]) > Major(matches[j]) })
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL's programs not found (/usr/lib/postgresql/*/bin or initdb on PATH): install the Debian package postgresql (make deps), or set " + BinEnv)
}

// Major is the major version in a Debian path like
// /usr/lib/postgresql/15/bin/initdb (0 when the path does not say).
func Major(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// ServerUser is who runs the server: the current user, or, as root (which
// PostgreSQL refuses), the postgres system user. cred is nil when no
// switch is needed.
func ServerUser() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, 0, 0, errors.New("running as root, and PostgreSQL refuses root: create the postgres system user (the Debian package postgresql does) or run as a normal user")
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}
