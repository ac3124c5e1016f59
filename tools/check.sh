#!/usr/bin/env bash
# The checks that need nothing started: every Go file gofmt-clean and go vet
# quiet in every module. CI runs it before the tests.
set -uo pipefail
cd "$(dirname "$0")/.."
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=($(sed -n 's|^\t\./||p' go.work))
status=0
unformatted="$(gofmt -l "${modules[@]}")"
if [ -n "$unformatted" ]; then
  echo "not gofmt-clean (run gofmt -w on them):" >&2
  echo "$unformatted" >&2
  status=1
fi
for m in "${modules[@]}"; do
  (cd "$m" && go vet ./...) || { echo "go vet failed in $m" >&2; status=1; }
done
[ "$status" = 0 ] && echo "check: gofmt and go vet clean in ${#modules[@]} modules" >&2
exit "$status"
