#!/usr/bin/env bash
# Builds the Kubernetes v1.33.13 binaries a K3s server bundles -
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy -
# and the pause (sandbox) program from the k8s.io/kubernetes Go module (the
# proxy serves it; k3s is not served), cached under
# $PRESSROOM_CACHE/kube-<version>-r<recipe>/bin. etcd comes from Debian
# (etcd-server, installed by `make deps`). Warm runs take well under a second.
#
# Output (stdout): shell assignments to eval:
#   KUBE_BIN (directory with the binaries), ETCD (path).
# Binaries already on PATH at the same version are used instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

# Everything runs inside main, so bash has parsed the whole file before
# running it (editing a script while it runs would otherwise corrupt it).
main() {
version=1.33.13
recipe=2 # bump when the build steps change, so caches rebuild
key="kube-$version-r$recipe"
root="$cache_root/$key"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

etcd_path() {
  command -v etcd 2>/dev/null || die "etcd is not installed; run 'make deps' (Debian package etcd-server)"
}

emit() { printf 'KUBE_BIN=%q\nETCD=%q\n' "$1" "$(etcd_path)"; }

if [ -f "$root/.done" ] && [ "${PRESSROOM_REBUILD:-}" != 1 ]; then
  emit "$root/bin"
  exit 0
fi

# A normal installation of the same version wins.
system_kube() {
  local c dir=""
  [ "${PRESSROOM_IGNORE_SYSTEM_KUBE:-}" != 1 ] || return 1
  for c in "${cmds[@]}"; do
    command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -qx "Kubernetes v$version" || return 1
    [ -z "$dir" ] || [ "$(dirname "$(command -v "$c")")" = "$dir" ] || return 1
    dir=$(dirname "$(command -v "$c")")
  done
  [ -x "$dir/pause" ] && echo "$dir"
}
if dir=$(system_kube); then
  emit "$dir"
  exit 0
fi

need_cmd go jq
mkdir -p "$cache_root"
exec 9>"$cache_root/.$key.lock"
flock 9
if [ -f "$root/.done" ] && [ "${PRESSROOM_REBUILD:-}" != 1 ]; then
  emit "$root/bin"
  exit 0
fi

build() {
  local out="$1" src="$1/src" m
  log "building ${cmds[*]} v$version from k8s.io/kubernetes (about 5-9 min on 2 cores)"
  copy_mod "k8s.io/kubernetes@v$version" "$src"
  rm -rf "$src/vendor" "$src/go.work" "$src/go.work.sum"
  # The module zip has no staging/ tree: use the published staging modules,
  # and empty stubs for the sample-* modules, which are not published.
  while read -r m; do
    case "$m" in
      k8s.io/sample-*)
        mkdir -p "$src/.stubs/${m#k8s.io/}"
        printf 'module %s\n\ngo 1.24\n' "$m" > "$src/.stubs/${m#k8s.io/}/go.mod"
        (cd "$src" && go mod edit -replace "$m=./.stubs/${m#k8s.io/}") ;;
      *) (cd "$src" && go mod edit -replace "$m=$m@v0.${version#1.}") ;;
    esac
  done < <(cd "$src" && go mod edit -json | jq -r '.Replace[] | select(.New.Path | startswith("./staging/")) | .Old.Path')
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$version"
  ld+=" -X k8s.io/component-base/version.gitMajor=${version%%.*}"
  ld+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version")"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$out/bin"
  # One go build of every command: they share most packages, compiled once.
  # Static (CGO_ENABLED=0), as K3s ships them.
  local pkgs=()
  for c in "${cmds[@]}"; do pkgs+=("./cmd/$c"); done
  (cd "$src" && CGO_ENABLED=0 "${nice_cmd[@]}" go build -trimpath -ldflags "$ld" -o "$out/bin/" "${pkgs[@]}") \
    || die "building ${cmds[*]} v$version failed"
  for c in "${cmds[@]}"; do
    "$out/bin/$c" --version | grep -qx "Kubernetes v$version" || die "$c reports '$("$out/bin/$c" --version)'"
  done
  # The sandbox ("pause") container every pod holds its namespaces with,
  # from the same source tree; static, so it runs in an image of its own.
  need_cmd gcc
  gcc -Os -static -Wall -Werror -DVERSION="v$version-pressroom" -o "$out/bin/pause" "$src/build/pause/linux/pause.c" \
    || die "building pause from $src/build/pause/linux/pause.c failed (needs gcc and the static C library, Debian libc6-dev)"
  rm -rf "$src"
}
stage "$root" build
log "kube toolchain ready in $root"
emit "$root/bin"
}
main "$@"
