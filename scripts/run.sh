#!/usr/bin/env bash
# `make run`: the whole gateway on this machine, in the foreground, on 127.0.0.1:
# Redis, the PDP, stand-ins for the seed's backend clusters (each echoes the
# request it received as JSON) and the proxy on HTTP and HTTPS.
#
# Every child runs in its own session (setsid), so stopping its process group
# also stops what it forked (gunicorn workers). Ctrl-C or SIGTERM stops them
# all, newest first, and waits for them; nothing is left behind.
#
# Settings are the seed's environment variables (HTTP_PORT, HTTPS_PORT,
# AUTH_PORT, REDIS_URL, MONGODB_URI, BLOCKCHAIN_CORE_URL, SESSION_MANAGEMENT_URL,
# AUTH_SERVICE_URL, TRON_PAYMENT_URL, JWT_SECRET_KEY, SSL_*), plus
# LUCID_RUN_DIR (state: certs, Redis data, logs; default ./run) and
# RUN_READY_TIMEOUT_S / RUN_STOP_GRACE_S.
#
# Sign-in (docs/auth.md): the PDP serves /api/v1/auth and /api/v1/users, so
# AUTH_SERVICE_URL defaults to the PDP. Unless MONGODB_URI names a server,
# SecantusDB (a MongoDB-compatible server from the tools cache) is started
# with its data in run/mongodb on LUCID_MONGODB_PORT (27017); unless SMTP_URL
# is set, a mail sink on LUCID_SMTP_PORT (8025) saves every mail in run/mail/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
RUN_DIR="${LUCID_RUN_DIR:-$ROOT/run}"
LOG_DIR="$RUN_DIR/logs"
PID_DIR="$RUN_DIR/pids"
HOST=127.0.0.1
READY_TIMEOUT_S="${RUN_READY_TIMEOUT_S:-60}"
STOP_GRACE_S="${RUN_STOP_GRACE_S:-15}"

die() { echo "run: $*" >&2; exit 2; }
short() { local p="$1"; echo "${p#"$ROOT"/}"; }  # paths inside the checkout, shown relative
say() { echo "run: $*" >&2; }

# --- settings -----------------------------------------------------------------

port_setting() {  # name default -> validated port number
  local name="$1" value="${!1:-$2}"
  if ! [[ "$value" =~ ^[0-9]{1,5}$ ]] || [ "$value" -lt 1 ] || [ "$value" -gt 65535 ]; then
    die "$name: expected a port from 1 to 65535, got '$value'"
  fi
  echo "$value"
}
HTTP_PORT="$(port_setting HTTP_PORT 8080)"
HTTPS_PORT="$(port_setting HTTPS_PORT 8081)"
AUTH_PORT="$(port_setting AUTH_PORT 8082)"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
SSL_ENABLED="${SSL_ENABLED:-true}"
case "${SSL_ENABLED,,}" in
  1|true|yes|on) SSL_ENABLED=true ;;
  0|false|no|off) SSL_ENABLED=false ;;
  *) die "SSL_ENABLED: expected true or false, got '$SSL_ENABLED'" ;;
esac

# The PDP is the auth service (sign-in API); a stand-in only when asked for.
AUTH_SERVICE_URL="${AUTH_SERVICE_URL:-http://$HOST:$AUTH_PORT}"

# The seed's cluster table; its URLs name Docker hosts, here they default to
# loopback stand-ins on the seed's ports.
CLUSTERS=(
  "BLOCKCHAIN_CORE_URL blockchain-core 8084"
  "SESSION_MANAGEMENT_URL session-management 8085"
  "AUTH_SERVICE_URL auth-service 8086"
  "TRON_PAYMENT_URL tron-payment 8087"
)

# "scheme://[user@]host:port/..." -> "host port" (port defaults by scheme)
url_host_port() {
  local url="$1" rest hostport host port
  rest="${url#*://}"; hostport="${rest%%/*}"; hostport="${hostport##*@}"
  if [[ "$hostport" == \[*\]* ]]; then host="${hostport%%]*}]"; port="${hostport##*]:}"; [ "$port" != "$hostport" ] || port=""
  else host="${hostport%%:*}"; port="${hostport#*:}"; [ "$port" != "$hostport" ] || port=""; fi
  if [ -z "$port" ]; then
    case "$url" in https://*) port=443 ;; redis://*|rediss://*) port=6379 ;; *) port=80 ;; esac
  fi
  echo "$host $port"
}

is_loopback() { [[ "$1" == 127.* || "$1" == localhost || "$1" == "[::1]" ]]; }

port_answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Every backend URL is checked before anything starts.
for cluster in "${CLUSTERS[@]}"; do
  read -r var _ default_port <<<"$cluster"
  IFS=',' read -r -a instances <<<"${!var:-http://$HOST:$default_port}"
  for url in "${instances[@]}"; do
    url="${url// /}"
    if [[ "$url" != http://* && "$url" != https://* ]]; then
      die "$var: expected comma-separated http(s):// URLs, got '$url'"
    fi
    read -r _ port <<<"$(url_host_port "$url")"
    if ! [[ "$port" =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
      die "$var: expected a port from 1 to 65535 in '$url'"
    fi
  done
done

# --- children -----------------------------------------------------------------

CHILD_PIDS=()
CHILD_NAMES=()
STOPPING=0

start_child() {  # name cmd... (environment already exported for it)
  local name="$1"; shift
  setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  local pid=$!
  CHILD_PIDS+=("$pid"); CHILD_NAMES+=("$name")
  echo "$pid" >"$PID_DIR/$name.pid"
}

stop_children() {
  [ "$STOPPING" -eq 0 ] || return 0
  STOPPING=1
  trap '' INT TERM
  local i pid alive deadline
  [ ${#CHILD_PIDS[@]} -gt 0 ] || return 0
  say "stopping ${CHILD_NAMES[*]}"
  # Newest first: the proxy stops taking requests before what it depends on goes.
  for ((i=${#CHILD_PIDS[@]}-1; i>=0; i--)); do
    kill -TERM -- "-${CHILD_PIDS[$i]}" 2>/dev/null || true
  done
  deadline=$((SECONDS + STOP_GRACE_S))
  while :; do
    alive=()
    for pid in "${CHILD_PIDS[@]}"; do
      kill -0 -- "-$pid" 2>/dev/null && alive+=("$pid")
    done
    [ ${#alive[@]} -gt 0 ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "still running after ${STOP_GRACE_S}s, killing process groups ${alive[*]}"
      for pid in "${alive[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
      break
    fi
    sleep 0.1
  done
  wait 2>/dev/null || true
  rm -f "$PID_DIR"/*.pid
  say "stopped"
}

on_signal() { stop_children; exit 0; }
on_exit() { local rc=$?; stop_children; exit "$rc"; }
trap on_signal INT TERM
trap on_exit EXIT

fail_child() {  # name reason
  say "$1 $2; last lines of $(short "$LOG_DIR/$1.log"):"
  tail -n 20 "$LOG_DIR/$1.log" >&2 || true
  exit 1
}

wait_ready() {  # name host port [http-path]
  local name="$1" host="$2" port="$3" path="${4:-}" pid deadline
  pid="$(cat "$PID_DIR/$name.pid")"
  deadline=$((SECONDS + READY_TIMEOUT_S))
  until if [ -n "$path" ]; then curl -fsS -o /dev/null --max-time 2 "http://$host:$port$path" 2>/dev/null
        else port_answers "$host" "$port"; fi; do
    kill -0 "$pid" 2>/dev/null || fail_child "$name" "exited during startup"
    [ "$SECONDS" -lt "$deadline" ] || fail_child "$name" "was not ready on $host:$port within ${READY_TIMEOUT_S}s"
    sleep 0.1
  done
}

require_free_port() {  # port setting-name
  if port_answers "$HOST" "$1"; then
    die "port $1 ($2) is already in use on $HOST; stop what listens there or set $2"
  fi
}

mkdir -p "$LOG_DIR" "$PID_DIR"
chmod 700 "$RUN_DIR"

# --- JWT secret ----------------------------------------------------------------

GENERATED_SECRET=""
if [ -z "${JWT_SECRET_KEY:-}" ]; then
  secret_file="$RUN_DIR/jwt-secret"
  if [ ! -s "$secret_file" ]; then
    (umask 077; openssl rand -hex 32 >"$secret_file")
  fi
  JWT_SECRET_KEY="$(cat "$secret_file")"
  GENERATED_SECRET="$secret_file"
fi
export JWT_SECRET_KEY

# --- Redis ---------------------------------------------------------------------

read -r REDIS_HOST REDIS_PORT <<<"$(url_host_port "$REDIS_URL")"
redis_answers() {  # any RESP reply (+PONG, -NOAUTH) means a Redis is there
  local line
  { exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 line <&3 || line=""
  exec 3>&-
  [[ "$line" == +* || "$line" == -* ]]
}
if redis_answers; then
  REDIS_NOTE="already running, reused"
elif is_loopback "$REDIS_HOST"; then
  require_free_port "$REDIS_PORT" REDIS_URL
  command -v redis-server >/dev/null || die "redis-server not found: run 'make bootstrap' (or set REDIS_URL to a running Redis)"
  mkdir -p "$RUN_DIR/redis"
  start_child redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$RUN_DIR/redis" --save 60 1000 --appendonly no --daemonize no
  wait_ready redis "$HOST" "$REDIS_PORT"
  REDIS_NOTE="started here, data in $(short "$RUN_DIR/redis")"
else
  die "REDIS_URL: nothing answers at $REDIS_HOST:$REDIS_PORT (only a loopback Redis is started here)"
fi
export REDIS_URL

# --- stand-ins for the backend clusters -------------------------------------------

STANDIN_NOTES=()
for cluster in "${CLUSTERS[@]}"; do
  read -r var service default_port <<<"$cluster"
  urls="${!var:-http://$HOST:$default_port}"
  export "$var=$urls"
  IFS=',' read -r -a instances <<<"$urls"
  n=0
  for url in "${instances[@]}"; do
    url="${url// /}"
    read -r host port <<<"$(url_host_port "$url")"
    if ! is_loopback "$host"; then
      STANDIN_NOTES+=("$service: $url (yours, not started here)")
      continue
    fi
    if [ "$var" = AUTH_SERVICE_URL ] && [ "$port" = "$AUTH_PORT" ]; then
      STANDIN_NOTES+=("auth: the PDP :$port")
      continue
    fi
    n=$((n + 1)); name="$service"; [ ${#instances[@]} -eq 1 ] || name="$service-$n"
    require_free_port "$port" "$var"
    start_child "$name" "$PY" -m devenv.standins.echo_service "$name" --host "$HOST" --port "$port"
    STANDIN_NOTES+=("$name :$port")
  done
done
for cluster in "${CLUSTERS[@]}"; do
  read -r var service default_port <<<"$cluster"
  IFS=',' read -r -a instances <<<"${!var}"
  n=0
  for url in "${instances[@]}"; do
    read -r host port <<<"$(url_host_port "${url// /}")"
    is_loopback "$host" || continue
    [ "$var" != AUTH_SERVICE_URL ] || [ "$port" != "$AUTH_PORT" ] || continue
    n=$((n + 1)); name="$service"; [ ${#instances[@]} -eq 1 ] || name="$service-$n"
    wait_ready "$name" "$HOST" "$port"
  done
done

# --- accounts: MongoDB, SMTP, keys ------------------------------------------------

if [ -z "${MONGODB_URI:-}" ]; then
  MONGODB_PORT="$(port_setting LUCID_MONGODB_PORT 27017)"
  require_free_port "$MONGODB_PORT" LUCID_MONGODB_PORT
  SECANTUSD="$(command -v secantusd-py || true)"
  tools_bin="${LUCID_TOOLS_CACHE:-$HOME/.cache/lucid-gateway/tools}/bin"
  [ -n "$SECANTUSD" ] || [ ! -x "$tools_bin/secantusd-py" ] || SECANTUSD="$tools_bin/secantusd-py"
  [ -n "$SECANTUSD" ] || die "secantusd-py not found: run 'make bootstrap' (or set MONGODB_URI to a running MongoDB)"
  mkdir -p "$RUN_DIR/mongodb"
  start_child mongodb "$SECANTUSD" --host "$HOST" --port "$MONGODB_PORT" --storage-path "$RUN_DIR/mongodb" \
    --standalone --cache-size 128M --log-level WARNING
  MONGODB_URI="mongodb://$HOST:$MONGODB_PORT/lucid_gateway"
  MONGODB_NOTE="SecantusDB started here, data in $(short "$RUN_DIR/mongodb") (production uses MongoDB)"
  wait_ready mongodb "$HOST" "$MONGODB_PORT"
else
  MONGODB_NOTE="yours, not started here"
fi
export MONGODB_URI

MAIL_NOTE=""
if [ -z "${SMTP_URL:-}" ]; then
  SMTP_PORT="$(port_setting LUCID_SMTP_PORT 8025)"
  require_free_port "$SMTP_PORT" LUCID_SMTP_PORT
  mkdir -p "$RUN_DIR/mail"
  start_child smtp "$PY" -m devenv.mail_sink --host "$HOST" --port "$SMTP_PORT" --dir "$RUN_DIR/mail"
  SMTP_URL="smtp://$HOST:$SMTP_PORT"
  MAIL_NOTE="$(short "$RUN_DIR/mail")/*.eml"
  wait_ready smtp "$HOST" "$SMTP_PORT"
fi
export SMTP_URL
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://$HOST:$HTTP_PORT}"
# Local runs let anyone sign up (the PDP's own default is admin-only).
export SIGNUP_MODE="${SIGNUP_MODE:-open}"
if [ -z "${TOTP_ENCRYPTION_KEYS:-}" ]; then
  keys_file="$RUN_DIR/totp-keys"
  if [ ! -s "$keys_file" ]; then
    (umask 077; echo "k1:$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')" >"$keys_file")
  fi
  TOTP_ENCRYPTION_KEYS="$(cat "$keys_file")"
fi
export TOTP_ENCRYPTION_KEYS

# --- the PDP ---------------------------------------------------------------------

require_free_port "$AUTH_PORT" AUTH_PORT
export AUTH_PORT PDP_BIND_HOST="${PDP_BIND_HOST:-$HOST}" POLICY_DIR="${POLICY_DIR:-$ROOT/policies}"
start_child pdp "$PY" -m pdp serve
# /v1/ready: the policy is compiled and Redis answers (an open port is not enough).
wait_ready pdp "$HOST" "$AUTH_PORT" /v1/ready
PDP_URL="http://$HOST:$AUTH_PORT"
export PDP_URL

# --- the proxy ---------------------------------------------------------------------

PROXY_NOTE=""
if [ -f "$ROOT/proxy/__main__.py" ]; then
  require_free_port "$HTTP_PORT" HTTP_PORT
  export HTTP_PORT HTTPS_PORT LISTEN_HOST="${LISTEN_HOST:-$HOST}" SSL_ENABLED
  if [ "$SSL_ENABLED" = true ]; then
    require_free_port "$HTTPS_PORT" HTTPS_PORT
    if [ -z "${SSL_CERT_PATH:-}" ] && [ -z "${SSL_KEY_PATH:-}" ]; then
      SSL_CERT_PATH="$RUN_DIR/certs/gateway.crt"; SSL_KEY_PATH="$RUN_DIR/certs/gateway.key"
      if [ ! -s "$SSL_CERT_PATH" ] || [ ! -s "$SSL_KEY_PATH" ]; then
        mkdir -p "$RUN_DIR/certs"
        (umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
          -days 365 -subj "/CN=localhost" \
          -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
          -keyout "$SSL_KEY_PATH" -out "$SSL_CERT_PATH" 2>"$LOG_DIR/openssl.log") \
          || die "could not generate a self-signed certificate (see $LOG_DIR/openssl.log)"
        say "generated a self-signed certificate for localhost in $(short "$RUN_DIR/certs")"
      fi
    fi
    [ -r "${SSL_CERT_PATH:-}" ] || die "SSL_CERT_PATH: no readable certificate at '${SSL_CERT_PATH:-}'"
    [ -r "${SSL_KEY_PATH:-}" ] || die "SSL_KEY_PATH: no readable key at '${SSL_KEY_PATH:-}'"
    export SSL_CERT_PATH SSL_KEY_PATH
  fi
  start_child proxy "$PY" -m proxy
  wait_ready proxy "$HOST" "$HTTP_PORT"
  [ "$SSL_ENABLED" != true ] || wait_ready proxy "$HOST" "$HTTPS_PORT"
else
  PROXY_NOTE="the proxy is not built yet (no proxy/__main__.py): skipped; ask the PDP directly on :$AUTH_PORT"
fi

# --- banner ------------------------------------------------------------------------

TOKEN="$("$PY" -m pdp token --sub alice --roles user --mfa 2>"$LOG_DIR/token.log" | tail -n 1)" || TOKEN=""
if [ -n "$GENERATED_SECRET" ]; then
  secret_hint="JWT_SECRET_KEY=\$(cat $(short "$GENERATED_SECRET"))"
else
  secret_hint="JWT_SECRET_KEY=<yours>"
fi
{
  echo
  echo "lucid-gateway is up on $HOST (Ctrl-C stops everything)"
  if [ -z "$PROXY_NOTE" ]; then
    echo "  gateway    http://$HOST:$HTTP_PORT"
    [ "$SSL_ENABLED" != true ] || echo "             https://localhost:$HTTPS_PORT  (certificate: $(short "$SSL_CERT_PATH"))"
  else
    echo "  gateway    $PROXY_NOTE"
  fi
  echo "  PDP        $PDP_URL  (/v1/check, /v1/forward-auth, /v1/ready, /metrics)"
  echo "  redis      $REDIS_URL  ($REDIS_NOTE)"
  echo "  mongodb    $MONGODB_URI  ($MONGODB_NOTE)"
  if [ -n "$MAIL_NOTE" ]; then
    echo "  mail       $SMTP_URL: every sign-in mail is saved as $MAIL_NOTE"
  else
    echo "  mail       $SMTP_URL  (yours)"
  fi
  echo "  backends   ${STANDIN_NOTES[*]/%/,}" | sed 's/,$//'
  echo "  logs       $(short "$LOG_DIR")/*.log"
  if [ -n "$GENERATED_SECRET" ]; then
    # Only a secret generated here is shown: it is a throwaway for this machine.
    echo "  JWT secret dev only, generated into $(short "$GENERATED_SECRET"): $JWT_SECRET_KEY"
  fi
  echo
  if [ -n "$TOKEN" ]; then
    echo "Try it (a token for alice, role user, with MFA, valid ${JWT_ACCESS_TOKEN_EXPIRE_MINUTES:-15} min):"
    echo "  TOKEN=$TOKEN"
    if [ -z "$PROXY_NOTE" ]; then
      gw="http://$HOST:$HTTP_PORT"
      echo "  curl -s $gw/api/v1/meta/info"
      echo "  curl -s -H \"Authorization: Bearer \$TOKEN\" $gw/api/v1/sessions"
      echo "  curl -s -i $gw/api/v1/sessions     # no token: 401"
      [ "$SSL_ENABLED" != true ] || \
        echo "  curl -s --cacert $(short "$SSL_CERT_PATH") -H \"Authorization: Bearer \$TOKEN\" https://localhost:$HTTPS_PORT/api/v1/chain/info"
    else
      echo "  curl -s -i -H \"Authorization: Bearer \$TOKEN\" -H 'X-Original-Method: GET' -H 'X-Original-URI: /api/v1/sessions' $PDP_URL/v1/forward-auth"
    fi
    echo "More tokens: $secret_hint $(short "$PY") -m pdp token --sub bob --roles user,admin --mfa"
    if [ -z "$PROXY_NOTE" ]; then
      echo
      echo "Sign in for real (docs/auth.md; sign-up is $SIGNUP_MODE):"
      echo "  curl -s -H 'Content-Type: application/json' -d '{\"email\":\"you@example.com\"}' $gw/api/v1/users"
      echo "  curl -s -H 'Content-Type: application/json' -d '{\"email\":\"you@example.com\"}' $gw/api/v1/auth/login"
      [ -z "$MAIL_NOTE" ] || echo "  then open the link in the newest $MAIL_NOTE"
    fi
  else
    echo "(could not mint a token: see $(short "$LOG_DIR")/token.log)"
  fi
  echo
}

# --- foreground: until a signal, or until a child dies -----------------------------------

while :; do
  wait -n 2>/dev/null || true
  [ "$STOPPING" -eq 0 ] || break
  for i in "${!CHILD_PIDS[@]}"; do
    if ! kill -0 "${CHILD_PIDS[$i]}" 2>/dev/null; then
      fail_child "${CHILD_NAMES[$i]}" "exited unexpectedly; stopping the rest"
    fi
  done
done
