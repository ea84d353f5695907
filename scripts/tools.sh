#!/usr/bin/env bash
# Builds the real tools the tests use (OPA, Helm) at pinned versions from the Go
# module proxy into a per-machine cache, so a fresh clone rebuilds nothing.
# Prints nothing on success except what it built; exits 0 when Go is missing
# (the tests that need a tool then skip, or fail under CI=true).
set -euo pipefail

OPA_VERSION="${OPA_VERSION:-v1.22.4}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# Prometheus' Go module is tagged v0.<3xx>.y for release 3.xx.y (v0.316.0 = 3.16.0).
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${LUCID_TOOLS_CACHE:-$HOME/.cache/lucid-gateway/tools}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
  echo "tools: go not found; OPA and Helm tests will skip" >&2
  exit 0
fi

build_opa() {
  local out="$CACHE/opa-$OPA_VERSION/opa"
  if [ ! -x "$out" ]; then
    echo "tools: building opa $OPA_VERSION (once per machine)" >&2
    # OPA's go.mod has a replace directive, so `go install opa@vX` refuses;
    # a tiny wrapper module that requires OPA and calls its command does not.
    local src; src="$(mktemp -d)"
    cat >"$src/main.go" <<'GO'
package main

import (
	"fmt"
	"os"

	"github.com/open-policy-agent/opa/cmd"
)

func main() {
	if err := cmd.RootCommand.Execute(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
GO
    (cd "$src" && go mod init lucid/opa-wrapper >/dev/null 2>&1 \
      && go get "github.com/open-policy-agent/opa@$OPA_VERSION" >/dev/null 2>&1 \
      && go mod tidy >/dev/null 2>&1 \
      && mkdir -p "$(dirname "$out")" \
      && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" . && mv "$out.tmp" "$out")
    rm -rf "$src"
  fi
  ln -sf "$out" "$BIN/opa"
}

build_helm() {
  local out="$CACHE/helm-$HELM_VERSION/helm"
  if [ ! -x "$out" ]; then
    echo "tools: building helm $HELM_VERSION (once per machine)" >&2
    mkdir -p "$(dirname "$out")"
    GOBIN="$(dirname "$out")" CGO_ENABLED=0 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  fi
  ln -sf "$out" "$BIN/helm"
}

# promtool checks the chart's PrometheusRule expressions (tests/deploy/test_monitoring.py).
build_promtool() {
  local out="$CACHE/promtool-$PROMTOOL_VERSION/promtool"
  if [ ! -x "$out" ]; then
    echo "tools: building promtool $PROMTOOL_VERSION (once per machine)" >&2
    mkdir -p "$(dirname "$out")"
    GOBIN="$(dirname "$out")" CGO_ENABLED=0 nice go install -trimpath \
      "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  fi
  ln -sf "$out" "$BIN/promtool"
}

build_opa
build_helm
build_promtool
echo "$BIN"
