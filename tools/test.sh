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

# The offline tier needs the Pulumi and Kubernetes toolchains: warm, a cache
# hit in under a second; cold, most of an hour of compiling. Start both
# builders now, at low priority, so they use the CPU the other tiers leave
# idle; the tests that need them take the builders' lock, wait for these
# runs and find the result cached. Each runs in its own process group, so an
# interrupted `make test` stops its compilers too. Build logs:
# .artifacts/toolchain.log.
builds=()
stop_builds() { for pid in "${builds[@]}"; do kill -- "-$pid" 2>/dev/null; done; }
trap stop_builds EXIT
if [[ " ${modules[*]} " == *" tools "* ]]; then
  : > .artifacts/toolchain.log
  for builder in pulumi kube; do
    setsid "tools/toolchain/$builder-toolchain.sh" >/dev/null 2>>.artifacts/toolchain.log &
    builds+=($!)
  done
fi

for m in "${modules[@]}"; do
  echo "== go test $m" >&2
  (cd "$m" && go test -race -count=1 -timeout 60m -json ./... 2>&1) >> .artifacts/test.json
done
go run ./tools/cmd/testsum < .artifacts/test.json
