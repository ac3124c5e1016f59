#!/usr/bin/env bash
# pulumi for this repo: uses an installed pulumi + plugins, or the offline
# toolchain built from the Go module proxy (tools/toolchain/pulumi-toolchain.sh).
#
#   tools/pulumi.sh <any pulumi arguments>          e.g. preview --diff -s staging
#   tools/pulumi.sh history -s STACK                numbered updates (for rollback --to)
#   tools/pulumi.sh manifests -s STACK [--out DIR]  every Kubernetes object as YAML
#   tools/pulumi.sh rollback  -s STACK --to N [--yes]
#
# Project directory: the repo root, or $PRESSROOM_PROJECT_DIR (a directory with
# a Pulumi.yaml, e.g. a throw-away project whose main: points at infra/).
# Backend: $PULUMI_BACKEND_URL, else the one you logged in to with a normal
# pulumi installation, else file://$HOME/.local/state/pressroom/pulumi.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
project_dir="${PRESSROOM_PROJECT_DIR:-$repo}"

die() { echo "pulumi.sh: $*" >&2; exit 1; }

# setup: the toolchain (built once) and the backend.
setup() {
command -v jq >/dev/null || die "jq is not installed; run 'make deps'"
local env_out
env_out=$("$repo/tools/toolchain/pulumi-toolchain.sh") || die "the Pulumi toolchain is not available (see the messages above)"
eval "$env_out"
export PULUMI_HOME PULUMI_SKIP_UPDATE_CHECK PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION
export PATH="$PULUMI_BIN:$PATH"

if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  # The private PULUMI_HOME has no login: reuse the operator's normal one.
  creds="$HOME/.pulumi/credentials.json"
  current=""
  [ -f "$creds" ] && current=$(jq -r '.current // empty' "$creds")
  if [ -n "$current" ]; then
    export PULUMI_BACKEND_URL="$current"
    token=$(jq -r --arg c "$current" '.accessTokens[$c] // empty' "$creds")
    [ -n "$token" ] && [ -z "${PULUMI_ACCESS_TOKEN:-}" ] && export PULUMI_ACCESS_TOKEN="$token"
  else
    state="$HOME/.local/state/pressroom/pulumi"
    mkdir -p "$state"
    export PULUMI_BACKEND_URL="file://$state"
  fi
fi
}

pulumi_() { (cd "$project_dir" && pulumi "$@"); }

# parse_common ARGS...: sets stack, to, out, yes; anything else is an error.
parse_common() {
  stack="" to="" out="" yes=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -s|--stack) [ $# -ge 2 ] || die "$1 needs a stack name"; stack="$2"; shift 2 ;;
      --stack=*) stack="${1#*=}"; shift ;;
      --to) [ $# -ge 2 ] || die "--to needs an update number (see: tools/pulumi.sh history -s STACK)"; to="$2"; shift 2 ;;
      --to=*) to="${1#*=}"; shift ;;
      --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
      --out=*) out="${1#*=}"; shift ;;
      -y|--yes) yes=--yes; shift ;;
      *) die "unknown argument '$1'" ;;
    esac
  done
  [ -n "$stack" ] || die "name the stack: -s STACK (make ... STACK=name)"
}

# manifests: render every Kubernetes object of STACK to YAML without touching
# the stack: a throw-away stack in a temp backend gets STACK's config with
# cluster.mode=render, and `pulumi up` writes the files (renderYamlToDirectory).
manifests() {
  parse_common "$@"
  [ -z "$to" ] || die "manifests takes no --to"
  setup
  out="${out:-$repo/.artifacts/manifests/$stack}"
  # The rendered Secrets hold real values: only the operator may read them.
  (umask 077 && mkdir -p "$out")
  chmod 700 "$out"
  out="$(cd "$out" && pwd)"
  local cfg tmp
  cfg=$(pulumi_ config -s "$stack" --json --show-secrets) || die "cannot read the config of stack '$stack'"
  tmp=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  mkdir -p "$tmp/project" "$tmp/state"
  # Same project, main: made absolute so the program is found from the temp dir.
  local main
  main=$(sed -n 's/^main:[[:space:]]*//p' "$project_dir/Pulumi.yaml" | tr -d "\"'" | sed 's/[[:space:]]*$//')
  case "$main" in /*) ;; "") main="$project_dir" ;; *) main="$project_dir/$main" ;; esac
  { grep -v '^main:' "$project_dir/Pulumi.yaml"; echo "main: $main"; } > "$tmp/project/Pulumi.yaml"
  rm -rf "$out"/* 2>/dev/null || true
  (
    cd "$tmp/project"
    export PULUMI_BACKEND_URL="file://$tmp/state" PULUMI_CONFIG_PASSPHRASE="render-only-throwaway"
    unset PULUMI_ACCESS_TOKEN PULUMI_CONFIG_PASSPHRASE_FILE
    pulumi stack init "render" --secrets-provider=passphrase >/dev/null
    put_config pulumi render "$cfg"
    pulumi config set -s render --path pressroom:cluster.mode render
    pulumi config set -s render --path pressroom:cluster.renderDir "$out"
    pulumi up -s render --yes --skip-preview --suppress-outputs >&2
  ) || die "rendering stack '$stack' failed (see above)"
  local n
  n=$(find "$out" -name '*.yaml' | wc -l)
  [ "$n" -gt 0 ] || die "rendering stack '$stack' wrote no manifest into $out"
  echo "pulumi.sh: wrote $n manifest files to $out" >&2
}

# history_json [--show-secrets]: `pulumi stack history --json`, newest first,
# with update numbers. Self-managed (file, s3 ...) backends record no numbers
# (every .version is 0), so there the updates are numbered 1.. oldest first,
# as Pulumi Cloud numbers them.
history_json() {
  pulumi_ stack history -s "$stack" --json "$@" | jq -c '
    if length > 0 and all(.[]; (.version // 0) == 0)
    then reverse | to_entries | map(.value + {version: (.key + 1)}) | reverse
    else . end'
}

# history: the numbered updates of STACK (the numbers `rollback --to` takes).
history() {
  parse_common "$@"
  setup
  history_json | jq -r '.[] | [(.version|tostring), .kind, .result, .startTime, (.resourceChanges // {} | to_entries | map("\(.key)=\(.value)") | join(",")), .message] | @tsv' \
    | (printf 'UPDATE\tKIND\tRESULT\tSTARTED\tCHANGES\tMESSAGE\n'; cat) \
    | awk -F'\t' '{printf "%-7s %-8s %-10s %-21s %-28s %s\n", $1, $2, $3, $4, $5, $6}'
}

# put_config RUN STACK CONFIG: sets CONFIG (the shape `pulumi config --json`
# prints) on STACK with RUN (pulumi, or pulumi_ in the project): plain values
# in one go, secrets through stdin so they never show in ps.
put_config() {
  local run=$1 st=$2 cfg=$3 part key
  part=$(jq -c 'with_entries(select(.value.secret | not))' <<<"$cfg")
  [ "$part" = "{}" ] || "$run" config set-all -s "$st" --json "$part"
  while read -r key; do
    [ -n "$key" ] || continue
    jq -j --arg k "$key" '.[$k].value' <<<"$cfg" | "$run" config set -s "$st" --secret --raw "$key" >/dev/null
  done < <(jq -r 'to_entries[] | select(.value.secret and (.value.objectValue == null)) | .key' <<<"$cfg")
  # A secret inside an object (set with --path) has no stdin form.
  part=$(jq -c 'with_entries(select(.value.secret and .value.objectValue != null))' <<<"$cfg")
  [ "$part" = "{}" ] || "$run" config set-all -s "$st" --json "$part"
}

# rollback: Pulumi has no rollback command (state records what exists, not
# what you asked for), so we re-deploy the inputs of an earlier update: its
# config, which holds the image references, read from `pulumi stack history`.
rollback() {
  parse_common "$@"
  [[ "$to" =~ ^[0-9]+$ ]] || die "--to must be an update number from 'tools/pulumi.sh history -s $stack' (got '${to}')"
  setup
  local hist entry cfg cur key k3s
  hist=$(history_json --show-secrets) || die "cannot read the history of stack '$stack'"
  entry=$(jq -c --argjson n "$to" 'map(select(.version == $n)) | first // empty' <<<"$hist")
  [ -n "$entry" ] || die "stack '$stack' has no update $to; its updates are: $(jq -r 'map(.version|tostring) | join(" ")' <<<"$hist")"
  [ "$(jq -r .kind <<<"$entry")" = update ] || die "update $to is a '$(jq -r .kind <<<"$entry")', not an 'update'; pick an update to roll back to"
  [ "$(jq -r .result <<<"$entry")" = succeeded ] || die "update $to did not succeed (result: $(jq -r .result <<<"$entry")); pick one that did"
  cfg=$(jq -c '.config' <<<"$entry")
  jq -e 'all(.[]; .value != "ERROR_UNABLE_TO_DECRYPT" and ((.secret | not) or .value != null))' <<<"$cfg" >/dev/null \
    || die "cannot decrypt the secrets of update $to (set PULUMI_CONFIG_PASSPHRASE or log in to its secrets provider)"
  # K3s cannot go back a version: the servers keep the one they run now.
  k3s=$(pulumi_ config get -s "$stack" --path pressroom:cluster.k3sVersion 2>/dev/null || true)
  # Keys added after update N are removed so the config is exactly N's.
  cur=$(pulumi_ config -s "$stack" --json)
  while read -r key; do
    [ -n "$key" ] || continue
    pulumi_ config rm -s "$stack" "$key"
  done < <(jq -r --argjson old "$cfg" 'keys[] | select($old[.] == null)' <<<"$cur")
  put_config pulumi_ "$stack" "$cfg"
  if [ -n "$k3s" ] && [ "$(pulumi_ config get -s "$stack" --path pressroom:cluster.k3sVersion 2>/dev/null || true)" != "$k3s" ]; then
    pulumi_ config set -s "$stack" --path pressroom:cluster.k3sVersion "$k3s"
    echo "pulumi.sh: kept cluster.k3sVersion at $k3s (K3s does not support downgrades)" >&2
  fi
  echo "pulumi.sh: stack '$stack' config restored to update $to; deploying it" >&2
  pulumi_ up -s "$stack" ${yes} --message "rollback to update $to"
}

main() {
  case "${1:-}" in
    manifests) shift; manifests "$@" ;;
    rollback) shift; rollback "$@" ;;
    history) shift; history "$@" ;;
    ""|-h|--help) die "usage: tools/pulumi.sh <pulumi args> | history -s STACK | manifests -s STACK [--out DIR] | rollback -s STACK --to N [--yes]" ;;
    *) setup; pulumi_ "$@" ;;
  esac
}
main "$@"
