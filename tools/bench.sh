#!/usr/bin/env bash
# Runs every benchmark in the workspace once; results go to .artifacts/bench.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .artifacts
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=($(sed -n 's|^\t\./||p' go.work))
for m in "${modules[@]}"; do
  (cd "$m" && go test -run '^$' -bench . -benchmem -count=1 -timeout 30m ./...)
done | tee .artifacts/bench.txt
