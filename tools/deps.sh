#!/usr/bin/env bash
# Installs the system packages the tests and `make dev` use. On Debian/Ubuntu
# it runs apt-get for whatever is missing; elsewhere it names what to install.
set -euo pipefail

# command-to-check  debian-package
need=(
  "initdb:postgresql"
  "redis-server:redis-server"
  "etcd:etcd-server"
  "chromium:chromium"
  "openssl:openssl"
  # The live test's browser trusts the local ACME CA's root through an NSS database.
  "certutil:libnss3-tools"
  "jq:jq"
  "curl:curl"
  # The backup scripts' tests run them with busybox, the backup image's shell
  # and tools; static, because the node's images carry it too.
  "busybox-static:busybox-static"
  # The offline proof applies manifests with kubectl (this machine kind ships 1.32).
  "kubectl:kubernetes-client"
  # The K3s-equivalent node (make cluster, the live tests): container runtime,
  # CNI plugins, and what kube-proxy, kube-router and the namespaces use.
  "containerd:containerd"
  "runc:runc"
  "cni-bridge:containernetworking-plugins"
  "iptables:iptables"
  "ipset:ipset"
  "conntrack:conntrack"
  "ip:iproute2"
  "nsenter:util-linux"
)

have() {
  case "$1" in
    # Debian keeps the PostgreSQL server binaries off PATH.
    initdb) command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null ;;
    # ldd fails on a static binary, saying so
    busybox-static) [ -x /bin/busybox ] && [[ "$(ldd /bin/busybox 2>&1 || true)" == *'not a dynamic executable'* ]] ;;
    cni-bridge) [ -x /usr/lib/cni/bridge ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for pair in "${need[@]}"; do
  have "${pair%%:*}" || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "deps: installing ${missing[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start daemons we do not want; tests start their own on free ports.
  for svc in redis-server etcd containerd; do
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
  exit 0
fi

echo "deps: missing packages: ${missing[*]}" >&2
echo "deps: install them with your system's package manager (Debian names shown) and re-run." >&2
exit 1
