#!/usr/bin/env bash
# pulumi for this repo: uses an installed pulumi + plugins, or the offline
# toolchain built from the Go module proxy (tools/toolchain/pulumi-toolchain.sh).
#
#   tools/pulumi.sh <any pulumi arguments>          e.g. preview --diff -s staging
#   tools/pulumi.sh history -s STACK                numbered updates (for rollback --to)
#   tools/pulumi.sh manifests -s STACK [--out DIR]  every Kubernetes object as YAML
#       (DIR: new, empty, or a previous render's; default .artifacts/manifests/STACK)
#   tools/pulumi.sh images    -s STACK --to N       the image each service ran in update N
#   tools/pulumi.sh rollback  -s STACK --to N [--yes] [--downgrade-cert-manager]
#                             [--image SERVICE=REF ...]
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

# parse_common COMMAND OPTIONS ARGS...: sets stack, to, out, yes, cm_down and
# given (the --image values) from ARGS. OPTIONS lists the options COMMAND
# takes besides -s (any of: to out yes downgrade-cert-manager image); any
# other argument is an error.
parse_common() {
  local cmd=$1 allowed=" $2 "
  shift 2
  stack="" to="" out="" yes="" cm_down=""
  given=()
  takes() { [[ "$allowed" == *" $1 "* ]] || die "$cmd takes no --$1"; }
  # value OPTION WHAT VALUE...: OPTION must be followed by a value, not by
  # another option (`-s --to 3` names no stack).
  value() { if [ $# -lt 3 ] || [ -z "$3" ] || [[ "$3" == -* ]]; then die "$1 needs $2"; fi; }
  while [ $# -gt 0 ]; do
    case "$1" in
      -s|--stack) value "$1" "a stack name" "${@:2}"; stack="$2"; shift 2 ;;
      --stack=*) stack="${1#*=}"; [ -n "$stack" ] || die "--stack needs a stack name"; shift ;;
      --to) takes to; value --to "an update number (see: tools/pulumi.sh history -s STACK)" "${@:2}"; to="$2"; shift 2 ;;
      --to=*) takes to; to="${1#*=}"; shift ;;
      --out) takes out; value --out "a directory" "${@:2}"; out="$2"; shift 2 ;;
      --out=*) takes out; out="${1#*=}"; [ -n "$out" ] || die "--out needs a directory"; shift ;;
      -y|--yes) takes yes; yes=--yes; shift ;;
      --downgrade-cert-manager) takes downgrade-cert-manager; cm_down=1; shift ;;
      --image) takes image; value --image "SERVICE=IMAGE@sha256:DIGEST" "${@:2}"; given+=("$2"); shift 2 ;;
      --image=*) takes image; given+=("${1#*=}"); shift ;;
      *) die "unknown argument '$1'" ;;
    esac
  done
  [ -n "$stack" ] || die "name the stack: -s STACK (make ... STACK=name)"
}

# The services, each with an image in pressroom:images (= Services in
# stacks/config.go; tools/offline's TestPulumiShServicesMatchStacks keeps them equal).
services=(auth article media notification web)

# The file a render leaves in its output directory: it lists what that render
# wrote, so the next render of the directory replaces exactly those files.
marker=.pressroom-manifests

# out_check: sets out_state for $out: absent, empty, or ours (a previous
# render's output and nothing else), with out_old the entries of that render.
# Any other $out is refused, untouched.
out_check() {
  out_old=""
  if [ ! -e "$out" ] && [ ! -L "$out" ]; then out_state=absent; return; fi
  [ -d "$out" ] || die "--out $out exists and is not a directory; name a new or empty directory"
  local entries extra
  entries=$(cd "$out" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort) || die "cannot read $out"
  if [ -z "$entries" ]; then out_state=empty; return; fi
  entries=$(grep -vxF "$marker" <<<"$entries" || true)
  if [ -f "$out/$marker" ]; then
    out_old=$(grep -v '^#' "$out/$marker" | LC_ALL=C sort || true)
  elif [ "$out" = "$default_out" ] && ! grep -qvE '^(0-crd|1-manifest)(/[^/]+\.yaml)?$' <<<"$entries"; then
    # The default directory as renders before the marker left it.
    out_old=$entries
  else
    die "$out is not empty and was not written by 'tools/pulumi.sh manifests' (it has no $marker file); nothing was changed. Name a new or empty directory with --out (a render replaces only a directory a previous render wrote)"
  fi
  extra=$(LC_ALL=C comm -23 <(printf '%s\n' "$entries") <(printf '%s\n' "$out_old") | grep -v '^$' || true)
  [ -z "$extra" ] || die "$out holds files that its previous render did not write ($(head -n 3 <<<"$extra" | paste -sd' ')); nothing was changed. Move them elsewhere, or name another directory with --out"
  out_state=ours
}

# out_replace STAGE: puts the finished render in STAGE at $out. Only the files
# the previous render wrote are removed, and only now that the new one succeeded.
out_replace() {
  local stage=$1 e name
  out_check
  case "$out_state" in
    absent) mv "$stage" "$out" || die "cannot move the render from $stage to $out"; return ;;
    ours)
      # Deepest first, so each directory is empty when it is removed.
      LC_ALL=C sort -r <<<"$out_old" | while IFS= read -r e; do
        [ -n "$e" ] || continue
        if [ -d "$out/$e" ] && [ ! -L "$out/$e" ]; then rmdir -- "$out/$e" 2>/dev/null || true
        else rm -f -- "$out/$e"; fi
      done ;;
  esac
  chmod 700 "$out"
  for e in "$stage"/* "$stage"/.[!.]*; do
    [ -e "$e" ] || continue
    name=${e##*/}
    [ "$name" != "$marker" ] || continue
    [ ! -e "$out/$name" ] || die "cannot replace $out/$name (something changed it during the render); the new render is in $stage"
    mv "$e" "$out/$name"
  done
  # The marker last: until it is in place, the old one still describes $out.
  mv -f "$stage/$marker" "$out/$marker"
  rmdir "$stage"
}

# jq helpers over config in the shape of `pulumi config --json`:
# obj(k): the object at config key k; put(k; o) replaces it; setin(k; f; v)
# sets its field f.
# shellcheck disable=SC2016 # jq's $variables, not the shell's
lib='def obj($k): .[$k] | if . == null then {} elif (.objectValue|type) == "object" then .objectValue
       else ((.value // "") | (try fromjson catch {}) | if type == "object" then . else {} end) end;
     def put($k; $o): .[$k] = {value: ($o|tojson), objectValue: $o, secret: (.[$k].secret // false)};
     def setin($k; $f; $v): put($k; obj($k) | .[$f] = $v);
     def isset($k; $f): obj($k) | has($f) and .[$f] != null;
     def truthy: if type == "boolean" then . elif type == "string" then (. as $s | any(["1","t","T","TRUE","true","True"][]; . == $s)) else false end;'

# render_config DIR: makes $cfg (the shape of `pulumi config --json`)
# renderable: cluster.mode render into DIR, every image pinned (from the
# stack's last deployment where the config pins none), and what render mode
# cannot do switched off. Explains each change on stderr; fails before any
# engine run when an image is nowhere to be found.
render_config() {
  local dir=$1 mode have svc outputs got
  local -a missing=() still=()

  # The stack's own mode; stacks/load.go (build) defaults it to digitalocean.
  mode=$(jq -r "$lib"' obj("pressroom:cluster").mode // "digitalocean"' <<<"$cfg")

  # Images: only digitalocean mode builds them (existing and render stacks
  # must pin every one already), and render mode builds none. Pinned ones
  # stay; the others are the ones the stack deployed last (its `images`
  # output, see infra/main.go).
  if [ "$mode" = digitalocean ]; then
    have=$(jq -r "$lib"' obj("pressroom:images") | to_entries[] | select((.value|type) == "string" and .value != "") | .key' <<<"$cfg")
    for svc in "${services[@]}"; do grep -qxF "$svc" <<<"$have" || missing+=("$svc"); done
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    outputs=$(pulumi_ stack output -s "$stack" --json --show-secrets) || die "cannot read the outputs of stack '$stack' (the images it deployed last)"
    got=$(jq -c --args '.images | if type == "object" then with_entries(select(.key as $k | any($ARGS.positional[]; . == $k) and (.value|type) == "string" and .value != "")) else {} end' "${missing[@]}" <<<"$outputs")
    for svc in "${missing[@]}"; do jq -e --arg s "$svc" 'has($s)' <<<"$got" >/dev/null || still+=("$svc"); done
    if [ ${#still[@]} -gt 0 ]; then
      {
        if [ "$(jq 'length' <<<"$outputs")" = 0 ]; then
          echo "pulumi.sh: cannot render stack '$stack': pressroom:images pins no image for ${still[*]}, and the stack has never been deployed, so there are no deployed images to use instead (rendering builds no images)."
        else
          echo "pulumi.sh: cannot render stack '$stack': pressroom:images pins no image for ${still[*]}, and the stack's last deployment recorded none for them either (its 'images' output; rendering builds no images)."
        fi
        echo "Either deploy the stack first (make up STACK=$stack) and render again, or pin each image by digest:"
        for svc in "${still[@]}"; do
          echo "  tools/pulumi.sh config set -s $stack --path 'pressroom:images.$svc' registry.example.com/pressroom/$svc@sha256:<digest>"
        done
      } >&2
      exit 1
    fi
    echo "pulumi.sh: images of ${missing[*]} are the ones stack '$stack' deployed last (pressroom:images does not pin them)" >&2
    cfg=$(jq -c --argjson got "$got" "$lib"' put("pressroom:images"; $got + obj("pressroom:images"))' <<<"$cfg")
  fi

  # K3s upgrades: stacks/load.go (build) defaults upgrades.enabled to
  # cluster.mode == digitalocean, so a digitalocean stack deploys the upgrade
  # controller and Plan without saying so. Carry that effective value over:
  # in render mode it defaults to off.
  cfg=$(jq -c --arg mode "$mode" "$lib"' if isset("pressroom:upgrades"; "enabled") then .
    else setin("pressroom:upgrades"; "enabled"; $mode == "digitalocean") end' <<<"$cfg")

  # A DigitalOcean registry is a cloud resource, which render mode does not
  # create; every image is pinned now, so no registry is needed.
  if [ "$mode" = digitalocean ] && [ "$(jq -r "$lib"' obj("pressroom:registry").kind // ""' <<<"$cfg")" = digitalocean ]; then
    cfg=$(jq -c "$lib"' setin("pressroom:registry"; "kind"; "none")' <<<"$cfg")
    echo "pulumi.sh: registry.kind digitalocean: rendered without the registry pull secret (registry-credentials) that 'up' creates from the registry's credentials" >&2
  fi

  # cert-manager is a helm.sh/v3 Release, which the Kubernetes provider does
  # not render (pulumi-kubernetes#1716): it installs it into a cluster or fails.
  if jq -e "$lib"' if isset("pressroom:certManager"; "install") then (obj("pressroom:certManager").install | truthy) else true end' <<<"$cfg" >/dev/null; then
    echo "pulumi.sh: cert-manager's Helm release is not rendered (the Kubernetes provider cannot render a Helm release); its ClusterIssuers are" >&2
  fi
  cfg=$(jq -c --arg dir "$dir" "$lib"' setin("pressroom:certManager"; "install"; false)
    | setin("pressroom:cluster"; "mode"; "render") | setin("pressroom:cluster"; "renderDir"; $dir)' <<<"$cfg")
}

# manifests: render every Kubernetes object of STACK to YAML without touching
# the stack: a throw-away stack of the same name in a temp backend gets
# STACK's config with cluster.mode=render (see render_config), and `pulumi up`
# writes the files (renderYamlToDirectory) into a new directory beside the
# output, which replaces the output only once the render succeeded.
manifests() {
  parse_common manifests "out" "$@"
  default_out="$repo/.artifacts/manifests/$stack"
  if [ -d "$default_out" ]; then default_out="$(cd "$default_out" && pwd -P)"; fi
  out="${out:-$default_out}"
  # Refuse a directory we may not write before anything else runs.
  if [ -d "$out" ]; then out="$(cd "$out" && pwd -P)"; fi
  out_check
  setup
  local parent base name tmp stage main n
  parent=$(dirname "$out") base=$(basename "$out")
  mkdir -p "$parent" || die "cannot create $parent"
  parent=$(cd "$parent" && pwd -P)
  out="$parent/$base"
  cleanup=()
  trap 'rm -rf "${cleanup[@]}"' EXIT
  tmp=$(mktemp -d) && cleanup+=("$tmp")
  # The rendered Secrets hold real values: only the operator may read them (mktemp: 0700).
  stage=$(mktemp -d "$parent/.$base.render.XXXXXX") || die "cannot create a directory beside $out to render into"
  cleanup+=("$stage")
  cfg=$(pulumi_ config -s "$stack" --json --show-secrets) || die "cannot read the config of stack '$stack'"
  render_config "$stage"
  mkdir -p "$tmp/project" "$tmp/state"
  # Same project, main: made absolute so the program is found from the temp dir.
  main=$(sed -n 's/^main:[[:space:]]*//p' "$project_dir/Pulumi.yaml" | tr -d "\"'" | sed 's/[[:space:]]*$//')
  case "$main" in /*) ;; "") main="$project_dir" ;; *) main="$project_dir/$main" ;; esac
  { grep -v '^main:' "$project_dir/Pulumi.yaml"; echo "main: $main"; } > "$tmp/project/Pulumi.yaml"
  # The throw-away stack has the operator's stack name: the program's
  # messages and names (pressroom-<stack>) are the real stack's.
  name=${stack##*/}
  (
    cd "$tmp/project"
    export PULUMI_BACKEND_URL="file://$tmp/state" PULUMI_CONFIG_PASSPHRASE="render-only-throwaway"
    unset PULUMI_ACCESS_TOKEN PULUMI_CONFIG_PASSPHRASE_FILE
    # The Kubernetes provider takes $KUBECONFIG as its kubeconfig argument,
    # which render mode refuses; and no in-cluster config either.
    unset KUBECONFIG KUBERNETES_SERVICE_HOST KUBERNETES_SERVICE_PORT KUBERNETES_MASTER
    pulumi stack init "$name" --secrets-provider=passphrase >/dev/null &&
      put_config pulumi "$name" "$cfg" &&
      pulumi up -s "$name" --yes --skip-preview --suppress-outputs >&2
  ) || die "rendering stack '$stack' failed (see above); $out was left as it was"
  n=$(find "$stage" -name '*.yaml' | wc -l)
  [ "$n" -gt 0 ] || die "rendering stack '$stack' wrote no manifest; $out was left as it was"
  {
    echo "# Written by 'tools/pulumi.sh manifests -s $stack' on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
    echo "# The next render of this directory replaces the files listed here; anything else in it stops that render."
    (cd "$stage" && find . -mindepth 1 | sed 's|^\./||' | { grep -vxF "$marker" || true; } | LC_ALL=C sort)
  } > "$stage/$marker"
  out_replace "$stage"
  echo "pulumi.sh: wrote $n manifest files to $out (mode 0700: they hold Secret values in clear text)" >&2
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
  parse_common history "" "$@"
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
  # Each step checks its status: callers may run this where set -e is off.
  part=$(jq -c 'with_entries(select(.value.secret | not))' <<<"$cfg") || return
  [ "$part" = "{}" ] || "$run" config set-all -s "$st" --json "$part" || return
  while read -r key; do
    [ -n "$key" ] || continue
    jq -j --arg k "$key" '.[$k].value' <<<"$cfg" | "$run" config set -s "$st" --secret --raw "$key" >/dev/null || return
  done < <(jq -r 'to_entries[] | select(.value.secret and (.value.objectValue == null)) | .key' <<<"$cfg")
  # A secret inside an object (set with --path) has no stdin form.
  part=$(jq -c 'with_entries(select(.value.secret and .value.objectValue != null))' <<<"$cfg") || return
  [ "$part" = "{}" ] || "$run" config set-all -s "$st" --json "$part"
}

# update_entry: the history entry of update $to (a succeeded update), with
# its config's secrets in clear text.
update_entry() {
  local hist entry
  hist=$(history_json --show-secrets) || die "cannot read the history of stack '$stack'"
  entry=$(jq -c --argjson n "$to" 'map(select(.version == $n)) | first // empty' <<<"$hist")
  [ -n "$entry" ] || die "stack '$stack' has no update $to; its updates are: $(jq -r 'map(.version|tostring) | join(" ")' <<<"$hist")"
  [ "$(jq -r .kind <<<"$entry")" = update ] || die "update $to is a '$(jq -r .kind <<<"$entry")', not an 'update'; pick an update to roll back to"
  [ "$(jq -r .result <<<"$entry")" = succeeded ] || die "update $to did not succeed (result: $(jq -r .result <<<"$entry")); pick one that did"
  echo "$entry"
}

# read_json FILE: a backend file, plain or compressed as the backend writes it.
read_json() {
  case "$1" in
    *.gz) gzip -dc "$1" ;;
    *.zst) command -v zstd >/dev/null || die "$1 is zstd-compressed: install zstd"; zstd -dqc "$1" ;;
    *) cat "$1" ;;
  esac
}

# update_state ENTRY: prints the state update $to left (its resources, the
# stack's outputs among them), or nothing when the backend keeps no copy.
# Pulumi Cloud exports any version. A file backend keeps a copy of the
# checkpoint beside each history record, in
# .pulumi/history/<project>/<stack>/<stack>-<nanoseconds>.history.json: the
# Nth record by name is update N, as `pulumi stack history` lists them.
# ENTRY (update $to's history entry) must agree with that record. Other
# self-managed backends (S3, ...) are not read.
update_state() {
  local entry=$1 root project name dir start kind f ext
  local -a files=()
  case "${PULUMI_BACKEND_URL:-}" in
    file://*)
      root=${PULUMI_BACKEND_URL#file://}
      root=${root%%\?*}
      # shellcheck disable=SC2088 # a literal ~ in the URL: the backend reads it as $HOME
      case "$root" in "~"|"~/"*) root="$HOME${root#\~}" ;; esac
      name=${stack##*/}
      case "$stack" in
        */*/*) project=${stack#*/}; project=${project%%/*} ;;
        *) project=$(sed -n 's/^name:[[:space:]]*//p' "$project_dir/Pulumi.yaml" | tr -d "\"'" | sed 's/[[:space:]]*$//' | head -n 1) ;;
      esac
      dir="$root/.pulumi/history/$project/$name"
      [ -d "$dir" ] || dir="$root/.pulumi/history/$name" # the layout before projects
      [ -d "$dir" ] || return 0
      for f in "$dir/$name"-*.history.json "$dir/$name"-*.history.json.gz "$dir/$name"-*.history.json.zst; do
        [ -f "$f" ] && files+=("$f")
      done
      [ ${#files[@]} -ge "$to" ] || return 0
      f=$(printf '%s\n' "${files[@]}" | LC_ALL=C sort | sed -n "${to}p")
      # The CLI prints the start in UTC with milliseconds; the record keeps Unix seconds.
      start=$(jq -r '.startTime | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601' <<<"$entry") || return 0
      kind=$(jq -r .kind <<<"$entry")
      [ "$(read_json "$f" | jq -r '"\(.kind) \(.startTime)"')" = "$kind $start" ] || return 0
      ext=${f##*.history.}
      f="${f%.history.*}.checkpoint.$ext"
      [ -f "$f" ] && read_json "$f"
      return 0 ;;
    https://*|http://*) pulumi_ stack export -s "$stack" --version "$to" 2>/dev/null || true ;;
  esac
}

# state_not_kept: why update $to's recorded images cannot be read.
state_not_kept() {
  echo "the backend keeps no copy of update $to's state (file backends and Pulumi Cloud keep one per update; ${PULUMI_BACKEND_URL:-this backend} does not, or it was removed)"
}

# recorded_images ENTRY: what update $to recorded in its `images` stack
# output (infra/main.go: service -> reference by digest), as JSON:
# {"kept": the backend kept that update's state, "images": the output, or
# null when that state has no images output}.
recorded_images() {
  local got
  got=$(update_state "$1" | jq -c '(.checkpoint.latest // .deployment // {}) | (.resources // [])
    | (map(select(.type == "pulumi:pulumi:Stack")) | first // {} | .outputs // {}) as $o
    | {kept: true, images: (if ($o | has("images") | not) or $o.images == null then null
        elif ($o.images | type) == "object" and ($o.images | has("ciphertext") | not)
        then $o.images | with_entries(select((.value|type) == "string" and .value != ""))
        else {} end)}') || got=""
  [ -n "$got" ] || got='{"kept":false,"images":null}'
  echo "$got"
}

# images: the images update N deployed, one "service reference" per line.
images() {
  parse_common images "to" "$@"
  [[ "$to" =~ ^[1-9][0-9]{0,8}$ ]] || die "--to must be an update number from 'tools/pulumi.sh history -s $stack', like 12 (got '${to}')"
  setup
  local entry rec
  entry=$(update_entry)
  rec=$(recorded_images "$entry")
  [ "$(jq -r .kept <<<"$rec")" = true ] || die "$(state_not_kept), so which images it deployed is not recorded"
  [ "$(jq -r '.images != null' <<<"$rec")" = true ] || die "update $to recorded no images output (its program exports none)"
  jq -r '.images | to_entries[] | "\(.key) \(.value)"' <<<"$rec"
}

# rollback: Pulumi has no rollback command (state records what exists, not
# what you asked for), so we re-deploy the inputs of an earlier update: its
# config, read from `pulumi stack history`, with every service pinned to the
# image that update deployed (a pin of its config, else the digest its
# `images` output recorded), so a service it built is not rebuilt from
# today's checkout.
rollback() {
  parse_common rollback "to yes downgrade-cert-manager image" "$@"
  # Decimal, no leading zeros: `--to 012` is not update 12 by accident.
  [[ "$to" =~ ^[1-9][0-9]{0,8}$ ]] || die "--to must be an update number from 'tools/pulumi.sh history -s $stack', like 12 (got '${to}')"
  local g svc ref overrides="{}"
  for g in "${given[@]}"; do
    svc=${g%%=*} ref=${g#*=}
    if [[ "$g" != *=* ]] || ! printf '%s\n' "${services[@]}" | grep -qxF "$svc"; then die "--image takes SERVICE=IMAGE@sha256:DIGEST with SERVICE one of ${services[*]} (got '$g')"; fi
    [[ "$ref" =~ @sha256:[0-9a-f]{64}$ ]] || die "--image $svc: give the image by digest, like registry.example.com/pressroom/$svc@sha256:<64 hex> (got '$ref')"
    overrides=$(jq -c --arg s "$svc" --arg r "$ref" '.[$s] = $r' <<<"$overrides")
  done
  setup
  local entry cfg cur outputs rec recorded pinned key k3s gen old cm_cur cm_old cm_default
  local -a missing=() built=()
  entry=$(update_entry)
  cfg=$(jq -c '.config' <<<"$entry")
  jq -e 'all(.[]; .value != "ERROR_UNABLE_TO_DECRYPT" and ((.secret | not) or .value != null))' <<<"$cfg" >/dev/null \
    || die "cannot decrypt the secrets of update $to (set PULUMI_CONFIG_PASSPHRASE or log in to its secrets provider)"

  # Images: what update N ran. A service its config pinned ran that pin; one
  # it built ran the digest its `images` output recorded.
  rec=$(recorded_images "$entry")
  recorded=$(jq -c '.images // {}' <<<"$rec")
  pinned=$(jq -c "$lib"' obj("pressroom:images") | with_entries(select((.value|type) == "string" and .value != ""))' <<<"$cfg")
  outputs=$(pulumi_ stack output -s "$stack" --json) || die "cannot read the outputs of stack '$stack'"
  if [ "$(jq -r .images <<<"$rec")" = null ] && ! jq -e 'type == "object" and has("images")' <<<"$outputs" >/dev/null; then
    # A program without an images output builds none: what its config pinned ran.
    echo "pulumi.sh: stack '$stack' records no images (no 'images' output, in update $to or now): restoring update $to's config, with the images it pins" >&2
    cfg=$(jq -c --argjson o "$overrides" "$lib"' reduce ($o | to_entries[]) as $e (.; setin("pressroom:images"; $e.key; $e.value))' <<<"$cfg")
  else
    for svc in "${services[@]}"; do
      ref=$(jq -r --arg s "$svc" --argjson o "$overrides" --argjson p "$pinned" '$o[$s] // $p[$s] // .[$s] // ""' <<<"$recorded")
      if [ -z "$ref" ]; then missing+=("$svc"); continue; fi
      jq -e --arg s "$svc" 'has($s)' <<<"$pinned" >/dev/null || built+=("$svc")
      cfg=$(jq -c --arg s "$svc" --arg r "$ref" "$lib"' setin("pressroom:images"; $s; $r)' <<<"$cfg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      {
        echo "pulumi.sh: nothing was changed: update $to built ${missing[*]}, and which digest it deployed is not recorded:"
        if [ "$(jq -r .kept <<<"$rec")" = true ]; then
          echo "  its 'images' output has no entry for them."
        else
          echo "  $(state_not_kept)."
        fi
        echo "Rolling back would build them from today's checkout instead. Either roll back to an update whose images are recorded (tools/pulumi.sh images -s $stack --to N lists them), or name each image by digest (from your registry):"
        g=""
        for svc in "${missing[@]}"; do g+=" --image $svc=registry.example.com/pressroom/$svc@sha256:<digest>"; done
        echo "  tools/pulumi.sh rollback -s $stack --to $to$g"
      } >&2
      exit 1
    fi
    echo "pulumi.sh: images of update $to: $(jq -r "$lib"' obj("pressroom:images") | to_entries | map("\(.key)=\(.value)") | join(" ")' <<<"$cfg")" >&2
  fi

  # cert-manager's CRDs and webhooks do not support going back a version:
  # keep the current chart (version, chart, images) unless asked.
  cur=$(pulumi_ config -s "$stack" --json --show-secrets) || die "cannot read the config of stack '$stack'"
  cm_default=$(sed -n 's/^[[:space:]]*DefaultCertManagerVersion[[:space:]]*=[[:space:]]*"\(v[^"]*\)".*/\1/p' "$repo/stacks/validate.go" | head -n 1)
  cm_cur=$(jq -r --arg d "$cm_default" "$lib"' obj("pressroom:certManager").version // $d' <<<"$cur")
  cm_old=$(jq -r --arg d "$cm_default" "$lib"' obj("pressroom:certManager").version // $d' <<<"$cfg")
  if [ -n "$cm_cur" ] && [ -n "$cm_old" ] && [ "$cm_cur" != "$cm_old" ] \
     && [ "$(printf '%s\n%s\n' "${cm_cur#v}" "${cm_old#v}" | sort -V | head -n 1)" = "${cm_old#v}" ]; then
    if [ -n "$cm_down" ]; then
      echo "pulumi.sh: downgrading cert-manager from $cm_cur to $cm_old, as asked (--downgrade-cert-manager)" >&2
    else
      cfg=$(jq -c --argjson cur "$cur" "$lib"' ($cur | obj("pressroom:certManager")) as $c
        | reduce ("version", "chart", "images") as $f (.; if ($c | has($f)) then setin("pressroom:certManager"; $f; $c[$f])
            else put("pressroom:certManager"; obj("pressroom:certManager") | del(.[$f])) end)' <<<"$cfg")
      echo "pulumi.sh: kept cert-manager at $cm_cur (update $to had $cm_old; cert-manager does not support downgrades: add --downgrade-cert-manager to go back anyway)" >&2
    fi
  fi

  # K3s cannot go back a version: the servers keep the one they run now.
  k3s=$(pulumi_ config get -s "$stack" --path pressroom:cluster.k3sVersion 2>/dev/null || true)
  # Nor does the JWT key: an older generation deletes the signing key auth
  # uses now, and everyone signed in since the rotation would be signed out.
  gen=$(pulumi_ config get -s "$stack" --path pressroom:jwt.keyGeneration 2>/dev/null || true)
  # Keys added after update N are removed so the config is exactly N's.
  while read -r key; do
    [ -n "$key" ] || continue
    pulumi_ config rm -s "$stack" "$key"
  done < <(jq -r --argjson old "$cfg" 'keys[] | select($old[.] == null)' <<<"$cur")
  put_config pulumi_ "$stack" "$cfg"
  if [ -n "$k3s" ] && [ "$(pulumi_ config get -s "$stack" --path pressroom:cluster.k3sVersion 2>/dev/null || true)" != "$k3s" ]; then
    pulumi_ config set -s "$stack" --path pressroom:cluster.k3sVersion "$k3s"
    echo "pulumi.sh: kept cluster.k3sVersion at $k3s (K3s does not support downgrades)" >&2
  fi
  old=$(pulumi_ config get -s "$stack" --path pressroom:jwt.keyGeneration 2>/dev/null || true)
  [[ "$old" =~ ^[0-9]+$ ]] || old=1 # unset: the default, 1
  if [[ "$gen" =~ ^[0-9]+$ ]] && [ "$gen" -gt "$old" ]; then
    pulumi_ config set -s "$stack" --path pressroom:jwt.keyGeneration "$gen"
    echo "pulumi.sh: kept jwt.keyGeneration at $gen (update $to had $old; going back would delete the current signing key)" >&2
  fi
  if [ ${#built[@]} -gt 0 ]; then
    echo "pulumi.sh: update $to built ${built[*]}; pressroom:images now pins the digests it deployed, so later updates deploy them too. To build from the checkout again, remove each pin: tools/pulumi.sh config rm -s $stack --path pressroom:images.<service>" >&2
  fi
  echo "pulumi.sh: stack '$stack' config restored to update $to; deploying it" >&2
  pulumi_ up -s "$stack" ${yes} --message "rollback to update $to"
}

main() {
  case "${1:-}" in
    manifests) shift; manifests "$@" ;;
    rollback) shift; rollback "$@" ;;
    images) shift; images "$@" ;;
    history) shift; history "$@" ;;
    ""|-h|--help) die "usage: tools/pulumi.sh <pulumi args> | history -s STACK | manifests -s STACK [--out DIR] | images -s STACK --to N | rollback -s STACK --to N [--yes] [--downgrade-cert-manager] [--image SERVICE=REF ...]" ;;
    *) setup; pulumi_ "$@" ;;
  esac
}
main "$@"
