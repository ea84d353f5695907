#!/usr/bin/env bash
# Brings the system tools the tests and `make run` use, on a fresh machine:
# Debian packages when missing (as root, or with sudo), then OPA and Helm at
# pinned versions built into a per-machine cache (scripts/tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
declare -A NEEDED=(
  [redis-server]=redis-server
  [redis-cli]=redis-tools
  [nginx]=nginx
  [openssl]=openssl
  [wrk]=wrk
  # A real SOCKS5 server for the proxy's egress tests (tests/proxy/test_proxy_egress.py).
  [microsocks]=microsocks
  # The admin page's browser tests (tests/ui/test_browser.py).
  [chromium]=chromium
  # Which PDP worker holds a connection (tests/proxy/test_proxy_pdp_stall.py).
  [ss]=iproute2
)
missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${NEEDED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]}" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the packaged services; the tests run their own on free ports.
    for svc in redis-server nginx; do $sudo service "$svc" stop >/dev/null 2>&1 || true; done
  else
    echo "bootstrap: please install ${missing[*]} (no apt-get here)" >&2
  fi
fi

bash scripts/tools.sh >/dev/null

# playwright-core (pinned in tests/ui/package-lock.json) drives that chromium;
# it downloads no browser of its own.
if command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/ui/node_modules/playwright-core ] || [ tests/ui/package-lock.json -nt tests/ui/node_modules ]; then
    npm ci --prefix tests/ui --no-audit --no-fund --silent >/dev/null
    touch tests/ui/node_modules
  fi
else
  echo "bootstrap: npm not found; the admin page's browser test will skip" >&2
fi
