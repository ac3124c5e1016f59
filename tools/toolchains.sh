#!/usr/bin/env bash
# Builds (or finds cached) every toolchain the tests use, before any test's
# clock starts: Pulumi and its providers, the Kubernetes binaries, the other
# parts of the K3s-equivalent node. Prints the time each took. Cold on an
# idle 2-core machine this is the long part of `make test`; warm it takes
# about a second. Builders and caches: tools/toolchain/.
set -euo pipefail
cd "$(dirname "$0")/toolchain"
total=$SECONDS
for t in pulumi kube node; do
  start=$SECONDS
  echo "== toolchain $t" >&2
  ./"$t"-toolchain.sh >/dev/null
  echo "== toolchain $t ready in $((SECONDS - start))s" >&2
done
echo "== toolchains ready in $((SECONDS - total))s" >&2
