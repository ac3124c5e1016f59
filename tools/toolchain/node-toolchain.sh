#!/usr/bin/env bash
# Builds the parts a K3s node runs besides Kubernetes itself, static
# (CGO_ENABLED=0, -trimpath, -s -w, with their version strings), from the Go
# module proxy (see TOOLCHAIN notes, "The parts K3s bundles"):
#   coredns (v1.14.6, only the plugins K3s's Corefile uses, see build_net),
#   kube-router v2.1.0, local-path-provisioner v0.0.37, metrics-server v0.8.0,
#   traefik v3.7.8, cert-manager v1.11.5 (controller, webhook, cainjector,
#   acmesolver, ctl), pebble v2.10.3, nats-server v2.10.x, jaeger v2.12.0
#   (the `jaeger` binary of the Go module's v1.75.0: the module tags v1
#   numbers, each paired with a v2 release, 1.75.0 with 2.12.0);
# and the manifests that go with them: Traefik's CRDs and RBAC, and
# cert-manager's Helm chart made installable (Chart.yaml filled in, CRDs in
# templates/crds.yaml behind `installCRDs`, as cert-manager's release does).
# Cached under $PRESSROOM_CACHE/node-<versions>-r<recipe>/. Warm runs take well
# under a second; PRESSROOM_REBUILD=1 forces a rebuild.
#
# Output (stdout): shell assignments to eval:
#   NODE_BIN (directory with the binaries), NODE_SHARE (the manifests).
#
# Build groups (each one `go build`, so packages shared inside a group compile
# once; the Go build cache also reuses whatever another build compiled from the
# same sources with the same flags):
#   net          coredns, traefik, pebble, nats-server: one Go workspace.
#                CoreDNS's packages are ~85% Traefik's (k8s.io v0.35 client,
#                grpc, otel, quic...), so it adds little; pebble and NATS are small.
#   kube         kube-router, local-path-provisioner, metrics-server: one
#                workspace on k8s.io/* v0.33.13 (kube-toolchain.sh's version).
#   jaeger       alone: its OpenTelemetry Collector v0.139 code does not compile
#                against the otel/collector versions Traefik pulls into a shared
#                build list (tried: exporterhelper/otelhttp API errors).
#   cert-manager alone: k8s.io v0.26 / controller-runtime v0.14, far too old to
#                share a build list with anything else.
# Why not fewer groups: in a workspace MVS picks one version of every module;
# Jaeger breaks (above), cert-manager would be dragged nine Kubernetes minors
# up, and merging kube into net (not tried) would move metrics-server's
# apiserver from v0.33 to v0.35 and bump x/text & co. for all. Why v0.33.13:
# reusing kube-toolchain.sh's compiled packages needs byte-identical versions of
# a package's whole dependency closure; these modules require newer x/net,
# grpc... than Kubernetes 1.33, and forcing kube's versions with `replace`
# changes the packages' build IDs anyway (measured: fewer cache hits), so only
# ~20% of the kube group's packages come from that cache. It is kept because
# it costs nothing and is the newest v0.33 patch.
# Measured cold on a 2-core machine (2026-12-07), module sources already in
# the module cache, an empty Go build cache, another session's tests running
# (load average 3-7): kube 727 s, net 644 s, jaeger 229 s, cert-manager
# 269 s; whole script 31 min wall, 2670 CPU-seconds. Warm: 0.03 s. With a warm
# Go build cache but no toolchain cache (PRESSROOM_REBUILD=1): 45 s.
# Separately, under load average ~20, CPU-seconds per group: net 1720 (with
# Jaeger's failed attempt inside), kube 650, jaeger 590, cert-manager 685.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

# Everything runs inside main, so bash has parsed the whole file before
# running it (editing a script while it runs would otherwise corrupt it).
main() {
coredns_version=1.14.6
kube_router_version=2.1.0
lpp_version=0.0.37
metrics_server_version=0.8.0
traefik_version=3.7.8
cert_manager_version=1.11.5
pebble_version=2.10.3
nats_versions=(2.10.29 2.10.27 2.10.24) # the platform deploys nats:2.10; newest served first
jaeger_version=1.75.0     # the Go module's tag...
jaeger_v2_version=2.12.0  # ...and the Jaeger v2 release it is (its RELEASE.md and CHANGELOG pair them)
k8s_lib_version=0.33.13 # k8s.io/* for the kube group: kube-toolchain.sh's, so its compiled packages are reused
recipe=2 # bump when the build steps change, so caches rebuild

node_key() {
  echo "node-coredns$coredns_version-kuberouter$kube_router_version-lpp$lpp_version-ms$metrics_server_version-traefik$traefik_version-cm$cert_manager_version-pebble$pebble_version-nats$1-jaeger$jaeger_version-k8s$k8s_lib_version-r$recipe"
}
emit() { printf 'NODE_BIN=%q\nNODE_SHARE=%q\n' "$1/bin" "$1/share"; }

# Fast path: a complete cache (for the first NATS version that has one).
fast_path() {
  local v
  [ "${PRESSROOM_REBUILD:-}" != 1 ] || return 1
  for v in "${nats_versions[@]}"; do
    if [ -f "$cache_root/$(node_key "$v")/.done" ]; then
      emit "$cache_root/$(node_key "$v")"
      return 0
    fi
  done
  return 1
}
fast_path && exit 0

need_cmd go jq flock
mkdir -p "$cache_root"
# One lock for every NATS variant: the version is only known after asking the proxy.
exec 9>"$cache_root/.$(node_key any).lock"
flock 9
fast_path && exit 0

nats_version=$(pick_version github.com/nats-io/nats-server/v2 "${nats_versions[@]}")
key=$(node_key "$nats_version")
root="$cache_root/$key"
parts="$cache_root/build-$key"
mkdir -p "$parts"
if [ "${PRESSROOM_REBUILD:-}" = 1 ]; then
  rm -rf "${parts:?}"/*
  rm -f "$root/.done"
fi

# ws_add WS NAME MODULE@VERSION: copy a module into the workspace WS and use it.
ws_add() {
  copy_pinned "$3" "$1/$2"
  rm -rf "$1/$2/vendor"
  (cd "$1" && GOWORK="$1/go.work" GOFLAGS=-buildvcs=false go work use "./$2") || die "go work use $3 failed"
}

# ws_build WS OUT LDFLAGS PKG...: one static go build of all PKGs in the workspace.
ws_build() {
  local ws="$1" out="$2" ld="$3"
  shift 3
  mkdir -p "$out"
  (cd "$ws" && GOWORK="$ws/go.work" GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
    "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w $ld" -o "$out/" "$@")
}

# ws_init WS: an empty workspace (go work use raises its go line as needed).
ws_init() {
  mkdir -p "$1"
  printf 'go 1.21\n' > "$1/go.work"
}

# Group "net": CoreDNS, Traefik, Pebble and NATS in one workspace (one build
# list: k8s.io v0.35, grpc, protobuf, otel, prometheus, x/* compile once).
build_net() {
  local out="$1" ws="$1/src" ld
  log "building coredns, traefik, pebble, nats-server v$nats_version (one Go workspace)"
  ws_init "$ws"
  ws_add "$ws" coredns "github.com/coredns/coredns@v$coredns_version"
  ws_add "$ws" traefik "github.com/traefik/traefik/v3@v$traefik_version"
  ws_add "$ws" pebble "github.com/letsencrypt/pebble/v2@v$pebble_version"
  ws_add "$ws" nats "github.com/nats-io/nats-server/v2@v$nats_version"
  # CoreDNS with exactly the plugins K3s's Corefile uses (errors health ready
  # kubernetes hosts prometheus forward cache loop reload loadbalance import
  # log; `import` is built into the Caddy core), in upstream's directive order.
  # Chosen over the full default set: that one is 1137 packages, 366 of them
  # beyond what Traefik compiles anyway (DataDog tracing, the Azure/AWS/Google
  # DNS backends, etcd, geoip...); this one is 587, only 79 beyond Traefik's.
  mkdir -p "$ws/coredns/cmd/coredns-k3s"
  cat > "$ws/coredns/cmd/coredns-k3s/main.go" <<'EOF'
// Command coredns-k3s is CoreDNS with only the plugins K3s's Corefile uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// Upstream's order (core/dnsserver/zdirectives.go), filtered to these plugins.
func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "prometheus", "errors", "log",
		"loadbalance", "cache", "hosts", "kubernetes", "loop", "forward",
	}
}

func main() { coremain.Run() }
EOF
  # Traefik v3.7 needs the github.com/traefik/traefik/dynamic/ext sub-module,
  # which is missing from the module zip (and not served): a stub with the two
  # (empty upstream too) types it uses.
  mkdir -p "$ws/traefik/pkg/config/dynamic/ext"
  printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24\n' > "$ws/traefik/pkg/config/dynamic/ext/go.mod"
  printf '// Package ext stands in for the sub-module missing from the module zip.\npackage ext\n\ntype HTTP struct{}\n\ntype Router struct{}\n' \
    > "$ws/traefik/pkg/config/dynamic/ext/ext.go"
  ld="-X github.com/traefik/traefik/v3/pkg/version.Version=v$traefik_version"
  ld+=" -X main.version=v$pebble_version"
  ld+=" -X github.com/nats-io/nats-server/v2/server.serverVersion=v$nats_version"
  ws_build "$ws" "$out/tmp" "$ld" \
    github.com/coredns/coredns/cmd/coredns-k3s \
    github.com/traefik/traefik/v3/cmd/traefik \
    github.com/letsencrypt/pebble/v2/cmd/pebble \
    github.com/nats-io/nats-server/v2 \
    || die "building coredns, traefik, pebble, nats-server failed"
  mkdir -p "$out/bin" "$out/share"
  mv "$out/tmp/coredns-k3s" "$out/bin/coredns"
  mv "$out/tmp/traefik" "$out/tmp/pebble" "$out/tmp/nats-server" "$out/bin/"
  local crd="$ws/traefik/docs/content/reference/dynamic-configuration"
  cp "$crd/kubernetes-crd-definition-v1.yml" "$out/share/traefik-crds.yaml"
  cp "$crd/kubernetes-crd-rbac.yml" "$out/share/traefik-rbac.yaml"
  rm -rf "$ws" "$out/tmp"
}

# Group "jaeger": its own module (it has a replace directive). Its
# OpenTelemetry Collector v0.139 libraries do not compile against the newer
# otel/collector versions Traefik and CoreDNS pull into a shared build list.
build_jaeger() {
  local out="$1" src="$1/src"
  log "building jaeger v$jaeger_v2_version (module v$jaeger_version, ./cmd/jaeger)"
  copy_pinned "github.com/jaegertracing/jaeger@v$jaeger_version" "$src"
  mkdir -p "$out/bin"
  # ./cmd/jaeger is Jaeger v2 (./cmd/all-in-one is v1, end of life
  # 2025-12-31). Its Makefile (scripts/makefiles/BuildInfo.mk, BUILD_INFO_V2)
  # sets latestVersion to the v2 tag.
  (cd "$src" && CGO_ENABLED=0 "${nice_cmd[@]}" go build -trimpath \
    -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$jaeger_v2_version" \
    -o "$out/bin/jaeger" ./cmd/jaeger) \
    || die "building jaeger v$jaeger_v2_version (./cmd/jaeger of module v$jaeger_version) failed"
  rm -rf "$src"
}

# Group "kube": the Kubernetes add-ons, on the k8s.io/* v$k8s_lib_version
# libraries kube-toolchain.sh compiles.
build_kube() {
  local out="$1" ws="$1/src" m p
  log "building kube-router, local-path-provisioner, metrics-server (one Go workspace, k8s.io v$k8s_lib_version)"
  ws_init "$ws"
  ws_add "$ws" kube-router "github.com/cloudnativelabs/kube-router/v2@v$kube_router_version"
  ws_add "$ws" local-path-provisioner "github.com/rancher/local-path-provisioner@v$lpp_version"
  ws_add "$ws" metrics-server "sigs.k8s.io/metrics-server@v$metrics_server_version"
  for m in kube-router local-path-provisioner metrics-server; do
    for p in $(cd "$ws/$m" && go mod edit -json | jq -r '.Require[] | select((.Path | startswith("k8s.io/")) and (.Version | test("^v0\\.[1-9][0-9]*\\.[0-9]+$"))) | .Path'); do
      (cd "$ws/$m" && go mod edit -require="$p@v$k8s_lib_version")
    done
  done
  ws_build "$ws" "$out/tmp" \
    "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$kube_router_version -X main.VERSION=v$lpp_version" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
    github.com/rancher/local-path-provisioner \
    || die "building kube-router, local-path-provisioner failed"
  # metrics-server's version lives in client-go (its Makefile's VERSION_LDFLAGS),
  # shared with the others: link it on its own (everything is compiled by now).
  ws_build "$ws" "$out/tmp" \
    "-X k8s.io/client-go/pkg/version.gitVersion=v$metrics_server_version" \
    sigs.k8s.io/metrics-server/cmd/metrics-server \
    || die "building metrics-server failed"
  mkdir -p "$out/bin"
  mv "$out/tmp/kube-router" "$out/tmp/local-path-provisioner" "$out/tmp/metrics-server" "$out/bin/"
  rm -rf "$ws" "$out/tmp"
}

# Group "cert-manager": v1.11.5 is on k8s.io v0.26, too old to share a build
# list with anything else; its own module, as upstream builds it.
build_cert_manager() {
  local out="$1" src="$1/src" c ld
  log "building cert-manager v$cert_manager_version (controller, webhook, cainjector, acmesolver, ctl)"
  copy_pinned "github.com/cert-manager/cert-manager@v$cert_manager_version" "$src"
  rm -rf "$src/vendor"
  # As cert-manager's Makefile (GOLDFLAGS, make/cmctl.mk) sets them.
  ld="-X github.com/cert-manager/cert-manager/pkg/util.AppVersion=v$cert_manager_version"
  ld+=" -X github.com/cert-manager/cert-manager/cmd/ctl/pkg/build.name=cmctl"
  ld+=" -X github.com/cert-manager/cert-manager/cmd/ctl/pkg/build/commands.registerCompletion=true"
  mkdir -p "$out/tmp" "$out/bin"
  (cd "$src" && CGO_ENABLED=0 "${nice_cmd[@]}" go build -trimpath -ldflags "-s -w $ld" -o "$out/tmp/" \
    ./cmd/controller ./cmd/webhook ./cmd/cainjector ./cmd/acmesolver ./cmd/ctl) \
    || die "building cert-manager v$cert_manager_version failed"
  for c in controller webhook cainjector acmesolver ctl; do
    mv "$out/tmp/$c" "$out/bin/cert-manager-$c"
  done
  make_cert_manager_chart "$src" "$out/share/cert-manager-chart"
  rm -rf "$src" "$out/tmp"
}

# make_cert_manager_chart SRC DEST: the chart as cert-manager's release builds
# it (make/manifests.mk): Chart.yaml from Chart.template.yaml with version and
# appVersion set, README from its template, and templates/crds.yaml = the CRDs
# of deploy/crds (which carry Helm label templates) behind installCRDs.
make_cert_manager_chart() {
  local src="$1" chart="$2" from="$1/deploy/charts/cert-manager" v="v$cert_manager_version"
  mkdir -p "$chart/templates"
  cp "$from"/templates/* "$chart/templates/"
  cp "$from/values.yaml" "$chart/"
  sed -e "s:{{RELEASE_VERSION}}:$v:g" "$from/README.template.md" > "$chart/README.md"
  {
    sed -e "s/^version: .*/version: $v/" -e "s/^appVersion: .*/appVersion: $v/" \
        -e 's/"{{IS_PRERELEASE}}"/"false"/' "$from/Chart.template.yaml"
    echo '  artifacthub.io/signKey: |'
    sed 's/^/    /' "$from/signkey_annotation.txt"
  } > "$chart/Chart.yaml"
  if ! grep -qx "version: $v" "$chart/Chart.yaml" || ! grep -qx "appVersion: $v" "$chart/Chart.yaml"; then
    die "could not set the version in $chart/Chart.yaml (has $from/Chart.template.yaml changed?)"
  fi
  {
    echo '{{- if .Values.installCRDs }}'
    (cd "$src" && bash hack/concat-yaml.sh deploy/crds/*.yaml) || die "concatenating cert-manager's CRDs failed"
    echo '{{- end }}'
  } > "$chart/templates/crds.yaml"
}

# check BIN PATTERN CMD...: the binary runs and its output matches PATTERN.
check() {
  local bin="$1" want="$2" got
  shift 2
  got=$("$bin" "$@" 2>&1) || die "'$(basename "$bin") $*' failed: $got"
  grep -q -e "$want" <<<"$got" || die "'$(basename "$bin") $*' says '$got', want '$want'"
}

check_all() {
  local b="$1" c
  check "$b/coredns" "CoreDNS-$coredns_version" -version
  check "$b/kube-router" "v$kube_router_version" --version
  check "$b/local-path-provisioner" "v$lpp_version" --version
  check "$b/metrics-server" "v$metrics_server_version" --version
  check "$b/traefik" "v$traefik_version" version
  check "$b/pebble" "v$pebble_version" -version
  check "$b/nats-server" "v$nats_version" --version
  check "$b/jaeger" "v$jaeger_v2_version" version
  # The controller's default solver image carries its version; the webhook
  # prints it in its help; cainjector and acmesolver print none.
  check "$b/cert-manager-controller" "cert-manager-acmesolver:v$cert_manager_version" --help
  check "$b/cert-manager-webhook" "(v$cert_manager_version)" --help
  check "$b/cert-manager-cainjector" "CA injector" --help
  check "$b/cert-manager-acmesolver" "ACME challenges" --help
  check "$b/cert-manager-ctl" "v$cert_manager_version" version --client
  for c in "$b"/*; do
    go version -m "$c" | grep -q 'CGO_ENABLED=0' || die "$c was not built with CGO_ENABLED=0"
  done
}

part_names=(kube net jaeger cert-manager)
for p in "${part_names[@]}"; do
  t=$SECONDS
  stage "$parts/$p" "build_${p//-/_}"
  log "$p group ready ($((SECONDS - t)) s)"
done

assemble() {
  local out="$1" p
  mkdir -p "$out/bin" "$out/share"
  for p in "${part_names[@]}"; do
    [ ! -d "$parts/$p/bin" ] || cp -a "$parts/$p/bin/." "$out/bin/"
    [ ! -d "$parts/$p/share" ] || cp -a "$parts/$p/share/." "$out/share/"
  done
  check_all "$out/bin"
}
stage "$root" assemble
# The parts are now copied into the toolchain; keep only the finished one.
rm -rf "$parts"
log "node toolchain ready in $root"
emit "$root"
}

# fetch MODULE@VERSION -> prints the module's directory in the module cache;
# a version the proxy refuses (or a proxy that cannot be reached) is a clear error.
fetch() {
  local out err dir
  out=$(go mod download -json "$1" 2>&1) || true
  err=$(jq -r '.Error // empty' <<<"$out" 2>/dev/null) || err="$out"
  dir=$(jq -r '.Dir // empty' <<<"$out" 2>/dev/null) || dir=""
  if [ -n "$err" ] || [ -z "$dir" ] || [ ! -d "$dir" ]; then
    die "the Go module proxy did not serve $1 (pinned by this script): ${err:-no module directory}"
  fi
  echo "$dir"
}

# copy_pinned MODULE@VERSION DEST -> writable copy of the module source.
copy_pinned() {
  local src
  src=$(fetch "$1")
  mkdir -p "$2"
  cp -a "$src/." "$2/"
  chmod -R u+w "$2"
}

# pick_version MODULE V... -> the first version the proxy serves.
pick_version() {
  local mod="$1" v out
  shift
  for v in "$@"; do
    out=$(go mod download -json "$mod@v$v" 2>/dev/null) || true
    if [ -n "$(jq -r '.Dir // empty' <<<"$out" 2>/dev/null)" ] && [ -z "$(jq -r '.Error // empty' <<<"$out" 2>/dev/null)" ]; then
      echo "$v"
      return 0
    fi
    log "the Go module proxy does not serve $mod@v$v, trying the next version"
  done
  local tried="$*"
  die "the Go module proxy serves none of $mod at v${tried// /, v}"
}

main "$@"
