package nodeimages

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// nsswitch makes account and host lookups explicit: glibc ≥ 2.34 has the
// files and dns modules built in, so no libnss_*.so is needed.
const nsswitch = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"

// DebianSpec is an image of Debian-installed programs: each binary (path,
// or name looked up on PATH) at its host path with the closure of its
// shared libraries and the dynamic loader, every ELF file found in
// dataDirs likewise, the dataDirs copied whole, busybox with all applets
// in /bin (so sh -c probes and scripts run), base files, then extra (which
// may replace any of them, e.g. /etc/passwd). Env is PATH only; callers
// set the rest.
func DebianSpec(name, tag string, binaries []string, dataDirs []string, extra []File) (Spec, error) {
	bb, err := BusyboxFiles("/bin/busybox")
	if err != nil {
		return Spec{}, err
	}
	files := append(baseFiles(), bb...)
	files = append(files, File{Path: "/etc/nsswitch.conf", Content: []byte(nsswitch), Mode: 0o644})
	c := newClosure()
	for _, b := range binaries {
		if !strings.Contains(b, "/") {
			if b, err = exec.LookPath(b); err != nil {
				return Spec{}, err
			}
		}
		if err := c.addELF(b); err != nil {
			return Spec{}, err
		}
	}
	for _, d := range dataDirs {
		tree, err := Tree(d, d, nil)
		if err != nil {
			return Spec{}, err
		}
		files = append(files, tree...)
		for _, f := range tree {
			if f.Source != "" && isELFFile(f.Source) {
				if err := c.addELF(f.Source); err != nil {
					return Spec{}, err
				}
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(c.files)) {
		files = append(files, c.files[p])
	}
	return Spec{Name: name, Tag: tag, Files: append(files, extra...), Env: []string{DefaultPath}}, nil
}

// PostgreSQL 15 as Debian installs it. The binaries stay at their Debian
// paths: postgres and initdb find share/ and lib/ relative to their real
// location, so only /usr/local/bin holds symlinks (for PATH).
const (
	pgRoot  = "/usr/lib/postgresql/15"
	pgShare = "/usr/share/postgresql/15"
	pgUID   = 70 // postgres:alpine's uid, which the platform's pods run as
)

// PostgresTools are on PATH in the postgres image.
var PostgresTools = []string{"postgres", "initdb", "pg_ctl", "psql", "pg_isready", "pg_dump", "pg_dumpall", "pg_restore", "createdb"}

// PostgresSpec is PostgreSQL 15 from Debian, a drop-in for the
// postgres:alpine image as infra/datastores runs it: uid 70, PGDATA under
// /var/lib/postgresql/data, sockets in /var/run/postgresql, Entrypoint
// docker-entrypoint.sh (a subset of upstream's: initdb with
// POSTGRES_USER/POSTGRES_PASSWORD, scripts from /docker-entrypoint-initdb.d,
// then exec) and Cmd postgres. LANG=C.UTF-8 (locale files from
// /usr/lib/locale/C.utf8: glibc 2.36 does not build that locale in) makes
// initdb pick UTF8 without --locale. Stop with SIGINT (fast shutdown) as
// upstream does: SIGTERM waits for every client to disconnect.
func PostgresSpec() (Spec, error) {
	// locale: initdb runs `locale -a` to import the system collations.
	bins := []string{"/usr/bin/locale"}
	for _, t := range PostgresTools {
		bins = append(bins, pgRoot+"/bin/"+t)
	}
	// Every module the server can load, except the LLVM JIT (libLLVM is
	// ~100 MB; without llvmjit.so the server just runs with jit off).
	mods, _ := filepath.Glob(pgRoot + "/lib/*.so")
	for _, m := range mods {
		if filepath.Base(m) != "llvmjit.so" {
			bins = append(bins, m)
		}
	}
	if len(mods) == 0 {
		return Spec{}, fmt.Errorf("no PostgreSQL modules in %s/lib", pgRoot)
	}
	zi, err := Tree("/usr/share/zoneinfo", "/usr/share/zoneinfo", skipZoneinfo)
	if err != nil {
		return Spec{}, err
	}
	extra := append(zi,
		File{Path: "/etc/passwd", Mode: 0o644, Content: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"postgres:x:70:70:PostgreSQL:/var/lib/postgresql:/bin/sh\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		File{Path: "/etc/group", Mode: 0o644, Content: []byte("root:x:0:\npostgres:x:70:\nnobody:x:65534:\n")},
		Dir("/var/run/postgresql", os.ModeSetgid|0o775, pgUID, pgUID),
		Dir("/var/lib/postgresql", 0o755, pgUID, pgUID),
		Dir("/var/lib/postgresql/data", os.ModeSticky|0o777, pgUID, pgUID),
		Dir("/docker-entrypoint-initdb.d", 0o755, 0, 0),
		File{Path: "/usr/local/bin/docker-entrypoint.sh", Mode: 0o755, Content: []byte(pgEntrypoint)},
	)
	for _, t := range PostgresTools {
		extra = append(extra, Symlink("/usr/local/bin/"+t, pgRoot+"/bin/"+t))
	}
	tag := version(pgRoot+"/bin/postgres", `\) (\d+\.\d+)`)
	spec, err := DebianSpec(Registry+"/postgres", tag, bins, []string{pgShare, "/usr/lib/locale/C.utf8"}, extra)
	if err != nil {
		return Spec{}, err
	}
	spec.Env = append(spec.Env, "LANG=C.UTF-8", "PGDATA=/var/lib/postgresql/data")
	spec.User = "70:70"
	spec.Entrypoint = []string{"docker-entrypoint.sh"}
	spec.Cmd = []string{"postgres"}
	spec.ExposedPorts = []string{"5432/tcp"}
	spec.StopSignal = "SIGINT"
	return spec, nil
}

// version tags Debian images with the program's own version ("15.20");
// "" (a content tag) if it cannot tell.
func version(bin, re string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	if m := regexp.MustCompile(re).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return ""
}

// pgEntrypoint runs as the postgres user (no gosu: the pod already is uid
// 70) and covers what infra/datastores relies on from upstream's script.
const pgEntrypoint = `#!/bin/sh
# First start: initdb, password auth from anywhere, run the init scripts on
# a socket-only server. Then exec the command (postgres).
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
	user="${POSTGRES_USER:-postgres}"
	db="${POSTGRES_DB:-$user}"
	mkdir -p "$PGDATA"
	chmod 700 "$PGDATA"
	pwfile="$(mktemp)"
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	# shellcheck disable=SC2086
	initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
	printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
	export PGUSER="$user" PGPASSWORD="$POSTGRES_PASSWORD"
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
	if [ "$db" != postgres ]; then
		psql -v ON_ERROR_STOP=1 --dbname postgres -v db="$db" -c 'CREATE DATABASE :"db"'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
		*.sql) psql -v ON_ERROR_STOP=1 --dbname "$db" -f "$f" ;;
		*.sql.gz) gunzip -c "$f" | psql -v ON_ERROR_STOP=1 --dbname "$db" ;;
		*) [ ! -e "$f" ] || echo "$0: ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	unset PGPASSWORD
	echo "$0: PostgreSQL init process complete"
fi
exec "$@"
`

// RedisSpec is Redis 7.0 from Debian as infra/datastores runs it: uid
// 999, command redis-server on PATH, data in /data, and sh + grep for the
// probe `sh -c "redis-cli ping | grep -q PONG"`.
func RedisSpec() (Spec, error) {
	tag := version("/usr/bin/redis-server", `v=(\d+\.\d+\.\d+)`)
	extra := []File{
		{Path: "/etc/passwd", Mode: 0o644, Content: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"redis:x:999:999:redis:/data:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Content: []byte("root:x:0:\nredis:x:999:\nnobody:x:65534:\n")},
		Dir("/data", 0o755, 999, 999),
	}
	spec, err := DebianSpec(Registry+"/redis", tag, []string{"/usr/bin/redis-server", "/usr/bin/redis-cli"}, nil, extra)
	if err != nil {
		return Spec{}, err
	}
	spec.User = "999:999"
	spec.WorkingDir = "/data"
	spec.Entrypoint = []string{"redis-server"}
	spec.ExposedPorts = []string{"6379/tcp"}
	return spec, nil
}
