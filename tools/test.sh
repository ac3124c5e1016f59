#!/usr/bin/env bash
# Runs every module's tests with the race detector (all tiers: unit,
# real datastores, Pulumi mocks, the offline engine and the browser), then
# prints one summary. Raw output is kept in .artifacts/test.json.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .artifacts
: > .artifacts/test.json
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=($(sed -n 's|^\t\./||p' go.work))
for m in "${modules[@]}"; do
  echo "== go test $m" >&2
  (cd "$m" && go test -race -count=1 -timeout 60m -json ./... 2>&1) >> .artifacts/test.json
done
go run ./tools/cmd/testsum < .artifacts/test.json
