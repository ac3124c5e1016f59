# Shared helpers for the toolchain builders (sourced, not run).
# Everything is built from the Go module proxy only; nothing else is downloaded.

cache_root="${PRESSROOM_CACHE:-$HOME/.cache/pressroom}"

# Go settings for building third-party modules outside the workspace:
# no go.work, let go.mod/go.sum be updated in the scratch copy, and skip
# sum.golang.org for pulumi modules (it 404s for them).
export GOWORK=off
export GOFLAGS="-mod=mod -buildvcs=false"
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi"
export GOTOOLCHAIN=local
# Builds share 2 cores with everyone else: stay polite.
nice_cmd=(nice -n 10)

# Run go from a neutral directory: never inside some module or workspace.
cd "${TMPDIR:-/tmp}"

log() { echo "toolchain: $*" >&2; }
die() { echo "toolchain: error: $*" >&2; exit 1; }

need_cmd() {
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is not installed; run 'make deps' (or install it) and retry"
  done
}

# mod_dir MODULE@VERSION -> prints the module's directory in the module cache.
mod_dir() {
  local out dir err
  out=$(go mod download -json "$1") || die "go mod download $1 failed (is the Go module proxy reachable?)"
  err=$(jq -r '.Error // empty' <<<"$out")
  [ -z "$err" ] || die "go mod download $1: $err"
  dir=$(jq -r '.Dir' <<<"$out")
  [ -d "$dir" ] || die "go mod download $1 gave no directory"
  echo "$dir"
}

# copy_mod MODULE@VERSION DEST -> writable copy of the module source.
copy_mod() {
  local src
  src=$(mod_dir "$1")
  mkdir -p "$2"
  cp -a "$src/." "$2/"
  chmod -R u+w "$2"
}

# stage NAME FUNC: runs FUNC OUTDIR in a temp dir beside the final one and
# renames it into place only when FUNC succeeds, so an interrupted build never
# leaves a half-filled cache. A finished stage is skipped.
stage() {
  local final="$1" fn="$2" tmp
  [ -f "$final/.done" ] && return 0
  tmp="$final.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  "$fn" "$tmp"
  touch "$tmp/.done"
  rm -rf "$final"
  mv "$tmp" "$final"
  trap - EXIT
}
