#!/usr/bin/env bash
# Builds the pinned developer tools from the Go module proxy into
# $PRESSROOM_CACHE/bin (default ~/.cache/pressroom/bin). A tool already built
# at the pinned version is kept, so reruns take no time. With names as
# arguments (tools/gotools.sh staticcheck) it builds only those.
set -euo pipefail
cache="${PRESSROOM_CACHE:-$HOME/.cache/pressroom}"
bin="$cache/bin"
mkdir -p "$bin" "$cache/stamps"

tools=(
  "buf:github.com/bufbuild/buf/cmd/buf@v1.75.0"
  "protoc-gen-go:google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
  "protoc-gen-connect-go:connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1"
  "staticcheck:honnef.co/go/tools/cmd/staticcheck@v0.8.2"
)
wanted=" $* "
for t in "${tools[@]}"; do
  name="${t%%:*}" pkg="${t#*:}"
  if [ $# -gt 0 ] && [[ "$wanted" != *" $name "* ]]; then continue; fi
  stamp="$cache/stamps/$name@${pkg##*@}"
  if [ -x "$bin/$name" ] && [ -f "$stamp" ]; then continue; fi
  echo "tools: building $pkg" >&2
  GOBIN="$bin" GOFLAGS=-mod=mod go install "$pkg"
  touch "$stamp"
done
