#!/usr/bin/env bash
# Builds the real tools the tests use (OPA, Helm) at pinned versions from the Go
# module proxy into a per-machine cache, so a fresh clone rebuilds nothing.
# SecantusDB (a MongoDB-compatible server, GPL-2.0) gets its own venv there
# too: it is a tool like redis-server, never a dependency of the package or
# the images. Prints nothing on success except what it built; exits 0 when Go
# is missing (the tests that need a tool then skip, or fail under CI=true).
#
# `tools.sh bench` builds instead the reference architecture `make bench`
# compares against (opa-envoy-plugin, envoyproxy/ratelimit) and the open-loop
# load generator (vegeta): a few minutes once per machine, so bootstrap (and
# with it `make test`) does not pay for them; the test that runs the
# reference chain calls this itself.
set -euo pipefail

OPA_VERSION="${OPA_VERSION:-v1.22.4}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
SECANTUSDB_VERSION="${SECANTUSDB_VERSION:-0.7.0b3}"
OPA_ENVOY_VERSION="${OPA_ENVOY_VERSION:-v1.15.2-envoy}"
RATELIMIT_VERSION="${RATELIMIT_VERSION:-v1.4.1-0.20260122083618-3fb702589d36}"
VEGETA_VERSION="${VEGETA_VERSION:-v12.12.0}"
# Prometheus' Go module is tagged v0.<3xx>.y for release 3.xx.y (v0.316.0 = 3.16.0).
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE="${LUCID_TOOLS_CACHE:-$HOME/.cache/lucid-gateway/tools}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

build_secantusdb() {
  local venv="$CACHE/secantusdb-$SECANTUSDB_VERSION"
  # A venv cannot be moved once built, so it is built in place and marked
  # complete last; a half-built one (no marker) is built again.
  # Several checkouts may bootstrap at once: one builds, the others wait.
  exec 9>"$CACHE/.secantusdb.lock"
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    echo "tools: installing secantusdb $SECANTUSDB_VERSION into its own venv (once per machine)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "secantusdb==$SECANTUSDB_VERSION"
    touch "$venv/.complete"
  fi
  flock -u 9
  ln -sf "$venv/bin/secantusd-py" "$BIN/secantusd-py"
}

build_secantusdb

if ! command -v go >/dev/null 2>&1; then
  echo "tools: go not found; OPA and Helm tests will skip" >&2
  exit 0
fi

# `go install PKG@VERSION` into a staging GOBIN, then moved to OUT, so a
# half-built binary never sits where the cache check looks.
go_install_to() {
  local out="$1" pkg="$2" gobin; gobin="$(mktemp -d)"
  GOBIN="$gobin" CGO_ENABLED=0 nice go install -trimpath "$pkg"
  mkdir -p "$(dirname "$out")"
  # go names the binary after the last path element, skipping a /vN major version.
  local path="${pkg%@*}" name; name="$(basename "$path")"
  [[ "$name" =~ ^v[0-9]+$ ]] && name="$(basename "$(dirname "$path")")"
  mv "$gobin/$name" "$out"
  rm -rf "$gobin"
}

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
    go_install_to "$out" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  fi
  ln -sf "$out" "$BIN/helm"
}

# opa-envoy-plugin's tags are not plain semver releases and `go install
# module@tag` refuses it; a wrapper module that requires it and builds its
# command (kept by a tools.go import so `go mod tidy` records its deps) does not.
build_opa_envoy() {
  local out="$CACHE/opa-envoy-$OPA_ENVOY_VERSION/opa-envoy"
  if [ ! -x "$out" ]; then
    echo "tools: building opa-envoy-plugin $OPA_ENVOY_VERSION (once per machine)" >&2
    local src; src="$(mktemp -d)"
    cat >"$src/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin"
GO
    (cd "$src" && go mod init lucid/opa-envoy-wrapper >/dev/null 2>&1 \
      && go get "github.com/open-policy-agent/opa-envoy-plugin@$OPA_ENVOY_VERSION" >/dev/null 2>&1 \
      && go mod tidy >/dev/null 2>&1 \
      && mkdir -p "$(dirname "$out")" \
      && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" \
           github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin \
      && mv "$out.tmp" "$out")
    rm -rf "$src"
  fi
  ln -sf "$out" "$BIN/opa-envoy"
}

# envoyproxy/ratelimit has no tagged release since v1.4.0; a pinned
# pseudo-version of main, whose command lives in src/service_cmd.
build_ratelimit() {
  local out="$CACHE/ratelimit-$RATELIMIT_VERSION/ratelimit"
  if [ ! -x "$out" ]; then
    echo "tools: building envoyproxy/ratelimit $RATELIMIT_VERSION (once per machine)" >&2
    go_install_to "$out" "github.com/envoyproxy/ratelimit/src/service_cmd@$RATELIMIT_VERSION"
  fi
  ln -sf "$out" "$BIN/ratelimit"
}

build_vegeta() {
  local out="$CACHE/vegeta-$VEGETA_VERSION/vegeta"
  if [ ! -x "$out" ]; then
    echo "tools: building vegeta $VEGETA_VERSION (once per machine)" >&2
    go_install_to "$out" "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
  fi
  ln -sf "$out" "$BIN/vegeta"
}

# promtool checks the chart's PrometheusRule expressions (tests/deploy/test_monitoring.py).
build_promtool() {
  local out="$CACHE/promtool-$PROMTOOL_VERSION/promtool"
  if [ ! -x "$out" ]; then
    echo "tools: building promtool $PROMTOOL_VERSION (once per machine)" >&2
    go_install_to "$out" "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  fi
  ln -sf "$out" "$BIN/promtool"
}

if [ "${1:-}" = "bench" ]; then
  build_opa_envoy
  build_ratelimit
  build_vegeta
else
  build_opa
  build_helm
  build_promtool
fi
echo "$BIN"
