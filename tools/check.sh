#!/usr/bin/env bash
# The fast tier (`make check`): everything that needs nothing started, across
# every module of go.work: gofmt, go vet, staticcheck, and the tests that start
# no datastore, Pulumi engine, node or browser (`go test -short`; each slow
# test skips itself under -short and says why). CI runs it before `make test`.
# Each step prints its time; go's build and test caches make a rerun fast.
set -uo pipefail
cd "$(dirname "$0")/.."
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=($(sed -n 's|^\t\./||p' go.work))
pkgs=()
for m in "${modules[@]}"; do pkgs+=("./$m/..."); done
status=0
total=$SECONDS

step() { # name command...
  local name=$1 start=$SECONDS
  shift
  if "$@"; then
    echo "check: $name ok in $((SECONDS - start))s" >&2
  else
    echo "check: $name FAILED in $((SECONDS - start))s" >&2
    status=1
  fi
}

gofmt_clean() {
  local unformatted
  unformatted="$(gofmt -l "${modules[@]}")"
  [ -z "$unformatted" ] && return 0
  echo "not gofmt-clean (run gofmt -w on them):" >&2
  echo "$unformatted" >&2
  return 1
}

command -v staticcheck >/dev/null || {
  echo "check: staticcheck is not on PATH; run make tools (it builds the pinned one into \$PRESSROOM_CACHE/bin)" >&2
  exit 1
}
step gofmt gofmt_clean
step "go vet" go vet "${pkgs[@]}"
step staticcheck staticcheck "${pkgs[@]}"
step "go test -short" go test -short -timeout 10m "${pkgs[@]}"
if [ "$status" = 0 ]; then
  echo "check: clean in ${#modules[@]} modules in $((SECONDS - total))s" >&2
fi
exit "$status"
