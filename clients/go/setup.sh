#!/usr/bin/env bash
# Prepares the Go client for building and regenerating: downloads the module's dependencies
# (go.sum-checked) and installs the pinned code generator plugins (tools.env) into
# clients/go/.bin. Idempotent; a second run with warm caches takes well under a second.
# Needs Go >= 1.24 on PATH; uses the go command's own module proxy settings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# shellcheck source=tools.env
source tools.env

log() { printf 'clients/go/setup: %s\n' "$*"; }
command -v go >/dev/null || { echo "clients/go/setup: ERROR: go is not on PATH" >&2; exit 1; }

go mod download

bin="$here/.bin"
mkdir -p "$bin"
# install NAME PACKAGE VERSION: go install, unless the installed binary already says VERSION.
install() {
    local name="$1" pkg="$2" want="$3" have=""
    if [[ -x "$bin/$name" ]]; then
        have="$("$bin/$name" --version 2>/dev/null | awk '{print $NF}')"
    fi
    if [[ "$have" == "$want" || "$have" == "${want#v}" ]]; then
        return
    fi
    log "installing $name $want"
    GOBIN="$bin" go install "$pkg@$want"
}
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
log "ready (go $(go env GOVERSION); plugins in $bin)"
