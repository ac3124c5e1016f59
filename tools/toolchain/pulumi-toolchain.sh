#!/usr/bin/env bash
# Builds the offline Pulumi toolchain from the Go module proxy (see
# TOOLCHAIN notes in the README, "Offline and air-gapped use"):
#   pulumi CLI v3.250.0, the Go language host (sdk v3.66.0),
#   the Kubernetes provider 4.24.0 and stand-in tls 5.2.0 / random 4.18.2
#   providers (pulumi-terraform-bridge test providers: offline tests only).
# The result is cached under $PRESSROOM_CACHE/pulumi-<recipe versions>/ with
# a private PULUMI_HOME holding the plugins. Warm runs take well under a second.
#
# Output (stdout): shell assignments to eval, e.g.
#   eval "$(tools/toolchain/pulumi-toolchain.sh)"
# PULUMI_BIN (directory holding pulumi + pulumi-language-go), PULUMI_HOME,
# PULUMI_SKIP_UPDATE_CHECK, PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION.
# If pulumi and all plugins are already installed the normal way, those are used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

# Everything runs inside main, so bash has parsed the whole file before
# running it (editing a script while it runs would otherwise corrupt it).
main() {
cli_version=3.250.0
langhost_sdk=3.66.0
k8s_version=4.24.0
k8s_module="github.com/pulumi/pulumi-kubernetes/provider/v4@v4.0.0-20260115033456-f47bc2d6f199"
tls_version=5.2.0
random_version=4.18.2
bridge_version=3.100.0
tls_upstream="github.com/hashicorp/terraform-provider-tls@v1.2.1-0.20230117062332-afdd54107aba"
random_upstream="github.com/terraform-providers/terraform-provider-random@v1.3.2-0.20231204135814-c6e90de46687"
recipe=1 # bump when the build steps change, so caches rebuild

key="pulumi-${cli_version}-go${langhost_sdk}-k8s${k8s_version}-tls${tls_version}-random${random_version}-bridge${bridge_version}-r${recipe}"
root="$cache_root/$key"

emit() {
  printf 'PULUMI_BIN=%q\nPULUMI_HOME=%q\n' "$1" "$2"
  printf 'PULUMI_SKIP_UPDATE_CHECK=true\nPULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true\n'
}

# Fast path 1: our own cache is complete.
if [ -f "$root/.done" ] && [ "${PRESSROOM_REBUILD:-}" != 1 ]; then
  emit "$root/bin" "$root/home"
  exit 0
fi

# Fast path 2: a normal installation with the exact plugin versions.
if [ "${PRESSROOM_IGNORE_SYSTEM_PULUMI:-}" != 1 ] && command -v pulumi >/dev/null 2>&1 \
   && command -v pulumi-language-go >/dev/null 2>&1 && command -v jq >/dev/null 2>&1; then
  if plugins=$(PULUMI_SKIP_UPDATE_CHECK=true pulumi plugin ls --json 2>/dev/null); then
    ok=1
    for p in "kubernetes $k8s_version" "tls $tls_version" "random $random_version"; do
      set -- $p
      jq -e --arg n "$1" --arg v "$2" 'any(.[]; .name==$n and .kind=="resource" and (.version==$v or .version==("v"+$v)))' <<<"$plugins" >/dev/null || ok=0
    done
    if [ "$ok" = 1 ]; then
      emit "$(dirname "$(command -v pulumi)")" "${PULUMI_HOME:-$HOME/.pulumi}"
      exit 0
    fi
  fi
fi

need_cmd go jq
mkdir -p "$cache_root"
parts="$cache_root/build-$key"
mkdir -p "$parts"

# Serialize concurrent builders (two test packages may ask at once).
exec 9>"$cache_root/.$key.lock"
flock 9
if [ -f "$root/.done" ] && [ "${PRESSROOM_REBUILD:-}" != 1 ]; then
  emit "$root/bin" "$root/home"
  exit 0
fi

build_cli() {
  local out="$1" src="$1/src"
  log "building pulumi CLI v$cli_version (about 5 min on 2 cores)"
  copy_mod "github.com/pulumi/pulumi/pkg/v3@v$cli_version" "$src"
  (cd "$src" && go mod edit -dropreplace=github.com/pulumi/pulumi/sdk/v3 \
    && "${nice_cmd[@]}" go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$cli_version" \
      -o "$out/pulumi" ./cmd/pulumi)
  rm -rf "$src"
  [ "$("$out/pulumi" version)" = "v$cli_version" ] || die "built pulumi reports '$("$out/pulumi" version)', want v$cli_version"
}

build_langhost() {
  local out="$1" src="$1/src"
  log "building the Go language host (sdk v$langhost_sdk)"
  mkdir -p "$src"
  (cd "$src" && go mod init pressroom.dev/langhost 2>/dev/null \
    && go get "github.com/pulumi/pulumi/sdk/v3/go/pulumi-language-go@v$langhost_sdk" \
    && "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w" -o "$out/pulumi-language-go" \
      github.com/pulumi/pulumi/sdk/v3/go/pulumi-language-go) \
    || die "building pulumi-language-go from sdk v$langhost_sdk failed"
  rm -rf "$src"
}

build_k8s() {
  local out="$1" src="$1/src" cmd
  log "building the Kubernetes provider $k8s_version (about 11 min on 2 cores)"
  copy_mod "$k8s_module" "$src"
  cmd="$src/cmd/pulumi-resource-kubernetes"
  # The module zip lacks the generated embed files; recreate them as its Makefile does.
  jq -c --arg v "$k8s_version" '.version = $v' "$cmd/schema.json" > "$cmd/schema-embed.json"
  jq -c . "$cmd/terraform-mapping.json" > "$cmd/terraform-mapping-embed.json"
  (cd "$src" && go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4 \
    && "${nice_cmd[@]}" go build -trimpath \
      -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$k8s_version" \
      -o "$out/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes)
  rm -rf "$src"
}

# shim_upstream MODULE@VER DIR: copy an upstream Terraform provider and add an
# exported `provider` package (its own is internal) for the bridge test provider.
shim_upstream() {
  local mod="${1%@*}" dir="$2"
  copy_mod "$1" "$dir"
  [ -f "$dir/internal/provider/provider.go" ] || die "$1 has no internal/provider package"
  mkdir -p "$dir/provider"
  cat > "$dir/provider/provider.go" <<EOF
// Package provider re-exports the internal provider for the Pulumi bridge (offline test build).
package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/provider"

	internal "$mod/internal/provider"
)

func New() provider.Provider { return internal.New() }
EOF
}

build_tf_test_providers() {
  local out="$1" src="$1/src" tp
  log "building stand-in tls $tls_version / random $random_version providers (bridge v$bridge_version test providers)"
  copy_mod "github.com/pulumi/pulumi-terraform-bridge/v3@v$bridge_version" "$src/bridge"
  shim_upstream "$tls_upstream" "$src/tls"
  shim_upstream "$random_upstream" "$src/random"
  tp="$src/bridge/pkg/pf/tests/internal/testprovider"
  # Report the versions the Pulumi SDKs ask for.
  sed -i "s/tlsVersion := \"4.0.4\"/tlsVersion := \"$tls_version\"/" "$tp/tls.go"
  sed -i "s/Version:     \"4.8.2\",/Version:     \"$random_version\",/" "$tp/random.go"
  grep -q "\"$tls_version\"" "$tp/tls.go" || die "could not patch the tls version in $tp/tls.go"
  grep -q "\"$random_version\"" "$tp/random.go" || die "could not patch the random version in $tp/random.go"
  (cd "$src/bridge" \
    && go mod edit -replace "${tls_upstream%@*}=../tls" -replace "${random_upstream%@*}=../random" \
    && "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w" -o "$out/pulumi-resource-tls" ./pkg/pf/tests/internal/testprovider/cmd/pulumi-resource-tls \
    && "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w" -o "$out/pulumi-resource-random" ./pkg/pf/tests/internal/testprovider/cmd/pulumi-resource-random)
  rm -rf "$src"
}

stage "$parts/cli" build_cli
stage "$parts/langhost" build_langhost
stage "$parts/tf" build_tf_test_providers
stage "$parts/k8s" build_k8s

assemble() {
  local out="$1"
  mkdir -p "$out/bin" "$out/home" "$out/providers"
  cp "$parts/cli/pulumi" "$parts/langhost/pulumi-language-go" "$out/bin/"
  export PULUMI_HOME="$out/home" PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
  for p in "kubernetes $k8s_version k8s" "tls $tls_version tf" "random $random_version tf"; do
    set -- $p
    "$out/bin/pulumi" plugin install resource "$1" "$2" --file "$parts/$3/pulumi-resource-$1" >/dev/null \
      || die "pulumi plugin install $1 $2 failed"
  done
  "$out/bin/pulumi" plugin ls >&2
}
stage "$root" assemble
# The parts are now copied into PULUMI_HOME; keep only the finished toolchain.
rm -rf "$parts"
log "pulumi toolchain ready in $root"
emit "$root/bin" "$root/home"
}
main "$@"
