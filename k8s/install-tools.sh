#!/usr/bin/env bash
# Install the tools tests/k8s needs into .privaflow/bin/ (idempotent; safe to run every time).
#
#   kustomize  built from its Go module with `go install` (the Go module proxy serves it; no
#              release binary is downloaded). Renders k8s/overlays/* exactly as
#              `kubectl apply -k` would.
#
# Usage: bash k8s/install-tools.sh        (from anywhere; needs Go >= 1.24 on PATH)
set -euo pipefail

KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"   # v5.8.3 needs Go 1.27

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/.privaflow/bin"
mkdir -p "$bin"

have_version() {  # have_version TOOL VERSION: is .privaflow/bin/TOOL that version?
    [[ -x "$bin/$1" ]] && [[ "$("$bin/$1" version 2>/dev/null)" == *"$2"* ]]
}

if have_version kustomize "$KUSTOMIZE_VERSION"; then
    echo "kustomize $KUSTOMIZE_VERSION already in $bin"
else
    if ! command -v go >/dev/null 2>&1; then
        echo "install-tools: 'go' not found; install Go >= 1.24 (e.g. apt-get install golang-go)" >&2
        exit 1
    fi
    echo "installing kustomize $KUSTOMIZE_VERSION into $bin (go install, about a minute)..."
    # GOTOOLCHAIN=local: build with the Go that is installed rather than fetching another one;
    # GOFLAGS=-mod=mod keeps a stray vendor/ or go.work elsewhere from interfering
    GOBIN="$bin" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
        go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    have_version kustomize "$KUSTOMIZE_VERSION" || {
        echo "install-tools: kustomize in $bin does not report $KUSTOMIZE_VERSION" >&2
        exit 1
    }
    echo "kustomize $KUSTOMIZE_VERSION installed"
fi
