"""`make faults`: open-loop load through the whole gateway, one fault at a time.

The gateway is what `make run` starts, each part on its own free loopback
port: redis-server (persistence as make run: RDB snapshots, no AOF),
SecantusDB and the mail sink (sign-in), the PDP (2 gunicorn workers, the
shipped policies plus one tight test plan, quotas and quota leases on, the
sign-in API behind AUTH_SERVICE_URL), two echo stand-ins behind the
blockchain_core cluster, and the proxy on HTTP and HTTPS with its routes file
in a working directory. The `opa-killed` row runs on a second gateway whose
PDP uses PDP_ENGINE=opa and a real OPA server.

bench/openloop.py sends a fixed rate of signed-in requests
(GET /api/v1/chain/...) plus a trickle with a revoked token, which must never
be admitted; some rows add a stream of their own (a tight-quota key, HTTPS,
POSTs, sign-ins). Each row: a quiet lead-in, the fault for FAULT_S, then
recovery for RECOVER_S. Printed per row: 2xx/4xx/5xx/errors during the fault
and after it, time to recover, wrongly admitted requests, what was lost, and
the row's own checks (quota admitted against the limit, POSTs that reached a
resetting upstream, users and audit records, tokens without a mail, ...).

FAULTS_RATE (requests/s, default 100), FAULT_S (5), RECOVER_S (5) and FAULTS
(comma-separated row names, default all) tune it. tests/faults runs it short.
"""

from __future__ import annotations

import calendar
import collections
import dataclasses
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from pdp.authn.revocation import RedisDenylist
from tests.support.pdp_process import start_pdp
from tests.support.ports import free_port
from tests.support.processes import ROOT, Server
from tests.support.redis_server import start_redis

from .stack import children

REDIS_ARGS = ("--save", "60 1000")  # as make run (devenv/run.py)
LOAD_PATH = "/api/v1/chain/blocks"
REVOKED_PATH = "/api/v1/chain/blocks/revoked"  # the revoked stream's own path: its decision-log lines
POST_PATH = "/api/v1/chain/transactions"  # non-idempotent, to blockchain_core
REVOKED_JTI = "faults-revoked"
# The tight plan (added to the working copy of policies/gateway/data.json): a daily
# quota the tight stream spends in its lead-in, so that any admit past it is an over-admission.
TIGHT_PLAN, TIGHT_LIMIT, TIGHT_RATE, TIGHT_LEAD_S = "faults-tight", 40, 25.0, 2.0
LOGIN_USERS = 20  # existing accounts the login stream asks links for
# A policy that burns CPU in every decision: numbers.range over SLOW_N items (about 200 ms
# in the wasm engine on a quiet core, ~0.75 us an item; the row reports the measured eval_ms).
SLOW_N = int(os.environ.get("FAULTS_SLOW_N", "270000"))


def mint(secret: str, sub: str, jti: str, plan: str = "enterprise", roles=("user",)) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "roles": list(roles), "plan": plan, "mfa": True, "jti": jti, "iat": now, "exp": now + 3600},
        secret,
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )


def start_echo(name: str, port: int | None = None) -> Server:
    port = port or free_port()
    return Server([sys.executable, "-m", "devenv.standins.echo_service", name, "--port", str(port)], port)


def listeners(port: int) -> int:
    """Listening TCP sockets on 127.0.0.1:port (one per proxy worker with SO_REUSEPORT)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            n += 1
    return n


def served_serial(port: int, ca: str) -> int | None:
    """The serial number of the certificate the HTTPS listener presents (None: no handshake)."""
    import socket
    import ssl

    from cryptography import x509

    context = ssl.create_default_context(cafile=ca)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
    except (OSError, ssl.SSLError):
        return None


class Gateway:
    """The make run processes on free ports; stop() ends every one of them.

    engine "opa": the PDP asks a real OPA server (started here); accounts: SecantusDB
    and the mail sink, the PDP serving the sign-in API through the proxy."""

    def __init__(self, workdir: Path, engine: str = "wasm", accounts: bool = True):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.engine, self.accounts = engine, accounts
        self.secret = secrets.token_hex(32)
        self.policy_dir = workdir / "policies"
        shutil.copytree(ROOT / "policies", self.policy_dir)
        data_path = self.policy_dir / "gateway" / "data.json"
        data = json.loads(data_path.read_text())
        data["plans"][TIGHT_PLAN] = {"daily": TIGHT_LIMIT}
        # Every sign-in of the load comes from 127.0.0.1: the per-IP brute-force bucket
        # (10 a minute) would answer 429 before any fault.
        data["brute_force_limit"] = {"limit": 1000000, "window_s": 60, "burst": 1000000}
        data_path.write_text(json.dumps(data, indent=1))
        self.routes_file = workdir / "routes.yaml"
        self.routes_good = (ROOT / "proxy" / "routes.default.yaml").read_text()
        self.routes_file.write_text(self.routes_good)
        self._servers = []
        self.mongo = self.mail = self.opa = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        from tests.support.certs import CertAuthority

        self.redis = start_redis(REDIS_ARGS)
        self.upstreams = [start_echo("blockchain-core-1"), start_echo("blockchain-core-2")]
        self.pdp_env = {
            "JWT_SECRET_KEY": self.secret,
            "REDIS_URL": self.redis.redis_url,
            "POLICY_DIR": str(self.policy_dir),
            "POLICY_RELOAD_INTERVAL_S": "0.5",
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "10000000",
            "RATE_LIMIT_BURST_SIZE": "10000000",
            "LOG_LEVEL": "warning",
            "JWT_REVOCATION_SYNC_S": "0.5",
        }
        if self.engine == "opa":
            from tests.support.tools import require_tool

            opa_port = free_port()
            self.opa_argv = [
                require_tool("opa"),
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{opa_port}",
                "--log-level",
                "error",
            ]
            self.opa = Server(self.opa_argv, opa_port)
            self.pdp_env.update({"PDP_ENGINE": "opa", "OPA_URL": self.opa.url})
        if self.accounts:
            import base64

            from tests.support.mongo_server import start_mongo
            from tests.support.smtp_server import start_smtp

            self.mongo = start_mongo()
            self.mail = start_smtp()
            self.pdp_env.update(
                {
                    "MONGODB_URI": self.mongo.mongodb_uri,
                    "SMTP_URL": self.mail.smtp_url,
                    "PUBLIC_BASE_URL": "https://gateway.example",
                    "SIGNUP_MODE": "open",
                    "TOTP_ENCRYPTION_KEYS": "k1:"
                    + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode(),
                    "MONGODB_TIMEOUT_MS": "1500",
                    "SMTP_TIMEOUT_MS": "2000",
                    "AUTH_LOGIN_PER_IP_PER_MINUTE": "100000",
                    "AUTH_LOGIN_PER_EMAIL_PER_HOUR": "1000",
                }
            )
        self.pdp = start_pdp(self.pdp_env, workers=2, timeout=120, ready_path="/v1/ready")
        self.ca = CertAuthority(self.workdir / "tls")
        self.cert_path, self.key_path = self.ca.issue(
            "127.0.0.1", dns=["localhost"], ips=["127.0.0.1"], serial=1001, prefix="server"
        )
        self.cert_good = Path(self.cert_path).read_bytes()
        self.proxy_port, self.https_port = free_port(), free_port()
        self.proxy = self.start_proxy()
        self.token = mint(self.secret, "load", "faults-load")
        self.revoked = mint(self.secret, "mallory", REVOKED_JTI)
        self.admin = mint(self.secret, "faults-admin", "faults-admin", roles=("admin", "user"))
        RedisDenylist(self.redis_client()).revoke("", REVOKED_JTI, 3600)
        if self.accounts:
            self.login_emails = [f"login-{i}@faults.example" for i in range(LOGIN_USERS)]
            for email in self.login_emails:
                r = requests.post(self.api("/users"), json={"email": email}, timeout=10)
                if r.status_code != 201:
                    raise RuntimeError(f"sign-up through the gateway: {r.status_code} {r.text[:200]}")
        self.wait_all_2xx()

    def redis_client(self):
        return redis.Redis.from_url(self.redis.redis_url, socket_timeout=2)

    def mongo_db(self):
        import pymongo

        return pymongo.MongoClient(self.mongo.mongodb_uri, serverSelectionTimeoutMS=3000).get_default_database()

    def start_proxy(self) -> Server:
        urls = ",".join(f"http://127.0.0.1:{u.port}" for u in self.upstreams)
        env = {
            "HTTP_PORT": str(self.proxy_port),
            "HTTPS_PORT": str(self.https_port),
            "SSL_ENABLED": "true",
            "SSL_CERT_PATH": self.cert_path,
            "SSL_KEY_PATH": self.key_path,
            "SSL_RELOAD_INTERVAL_S": "0.5",
            "ROUTES_FILE": str(self.routes_file),
            "LISTEN_HOST": "127.0.0.1",
            "PDP_URL": self.pdp.url,
            "PROXY_WORKERS": "1",
            "BLOCKCHAIN_CORE_URL": urls,
            "SESSION_MANAGEMENT_URL": urls,
            "AUTH_SERVICE_URL": self.pdp.url if self.accounts else urls,
            "TRON_PAYMENT_URL": urls,
            "LOG_LEVEL": "warning",
            "ACCESS_LOG": "false",
            "GRACE_PERIOD_S": "10",
        }
        return Server([sys.executable, "-m", "proxy"], self.proxy_port, env=env, ready_timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}{LOAD_PATH}"

    def api(self, path: str) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/api/v1{path}"

    def status(self, token: str, url: str | None = None) -> int:
        try:
            return requests.get(url or self.url, headers={"authorization": f"Bearer {token}"}, timeout=3).status_code
        except requests.RequestException:
            return 0

    def wait_all_2xx(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.status(self.token) == 200 for _ in range(4)) and self.status(self.revoked) == 401:
                return
            time.sleep(0.2)
        raise RuntimeError(
            "the gateway did not settle: user requests are not all 200 "
            f"(last {self.status(self.token)}, revoked {self.status(self.revoked)})"
        )

    def stop(self) -> None:
        for name in ("proxy", "pdp", "opa", "mail", "mongo", "redis"):
            server = getattr(self, name, None)
            try:
                if server is not None:
                    server.stop()
            except Exception:
                pass
        for server in getattr(self, "upstreams", []):
            try:
                server.stop()
            except Exception:
                pass


class SideLoad:
    """A second open-loop stream in threads, for what bench.openloop does not send (POSTs,
    sign-ins): `rate` requests/s from start() until stop(), each bounded by 3 s.
    Records (t_sent, status, content-type, request id, latency s); status 0: no answer."""

    def __init__(self, rate: float, make_request):
        import concurrent.futures
        import threading

        self.rate, self.make = rate, make_request  # make(n) -> (method, url, kwargs)
        self.results = []
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._session = threading.local()

    def _one(self, n, sent):
        method, url, kwargs = self.make(n)
        started = time.monotonic()
        try:
            r = requests.request(method, url, timeout=3, **kwargs)
            # the proxy's request id (it sets its own): the one the upstream saw
            self.results.append(
                (
                    sent,
                    r.status_code,
                    r.headers.get("content-type", ""),
                    r.headers.get("x-request-id", ""),
                    time.monotonic() - started,
                    kwargs.get("json"),
                )
            )
        except requests.RequestException:
            self.results.append((sent, 0, "", "", time.monotonic() - started, kwargs.get("json")))

    def _run(self):
        t0, n = time.time(), 0
        while not self._stop.is_set():
            due = t0 + n / self.rate
            delay = due - time.time()
            if delay > 0 and self._stop.wait(delay):
                break
            self._pool.submit(self._one, n, time.time())
            n += 1

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True)
        return self.results


# --- the faults: inject() then restore(), each returns what "lost" means for it -----


@dataclasses.dataclass
class Fault:
    name: str
    what: str
    inject: object
    restore: object
    lost: object = None  # (gw, before) -> str, "" when nothing was lost
    snapshot: object = None  # gw -> before
    tight: bool = False  # also spend a tight-quota key (over-admission check)
    https: bool = False  # also a stream over HTTPS
    side: object = None  # gw -> SideLoad (POSTs, sign-ins), run through the whole row
    check: object = None  # (gw, ctx) -> dict of the row's own figures
    gateway: str = "main"  # "opa": the row runs on the PDP_ENGINE=opa gateway
    cold: bool = False  # also a stream whose every request is new to the proxy (no lease, no
    # cached verdict: each one is a decision of the PDP)
    min_fault_s: float = 0.0  # a fault phase at least this long whatever FAULT_S says
    client_timeout_s: float = 3.0  # the load's per-request bound
    min_recover_s: float = 0.0  # a recovery phase at least this long whatever RECOVER_S says
    settle: object = None  # gw -> dict: waits (bounded) until the faulted part serves again


def _redis_keys(gw):
    """Keys that should outlive the row (TTL none or longer than a minute)."""
    client = gw.redis_client()
    keep = set()
    for key in client.scan_iter(count=1000):
        ttl = client.ttl(key)
        if ttl == -1 or ttl > 60:
            keep.add(key)
    return keep


def _redis_lost(gw, before):
    client = gw.redis_client()
    missing = [k for k in before if not client.exists(k)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {len(before)} Redis keys (quota counters: not saved before the kill)")
    if gw.status(gw.revoked) != 401:
        parts.append("the revocation")
    return ", ".join(parts)


def _kill_redis(gw):
    gw.redis.proc.kill()
    gw.redis.proc.wait(5)


def _restart_redis(gw):
    gw.redis = start_redis(REDIS_ARGS, port=gw.redis.port, workdir=gw.redis.workdir)


def _flushall(gw):
    gw.redis_client().flushall()


def _stop_redis(gw):
    gw.redis.signal(signal.SIGSTOP)


def _cont_redis(gw):
    gw.redis.signal(signal.SIGCONT)


def _kill_workers(n):
    def inject(gw):
        for pid in children(gw.pdp.proc.pid)[:n]:
            os.kill(pid, signal.SIGKILL)

    return inject


def _nothing(gw):
    pass


def _kill_upstream(gw):
    gw.upstreams[0].proc.kill()
    gw.upstreams[0].proc.wait(5)


def _restart_upstream(gw):
    gw.upstreams[0] = start_echo("blockchain-core-1", gw.upstreams[0].port)


def _hang_upstream(gw):
    gw.upstreams[0].signal(signal.SIGSTOP)


def _resume_upstream(gw):
    gw.upstreams[0].signal(signal.SIGCONT)


BROKEN_POLICY = "package gateway.broken\n\nthis is not rego {\n"


def _push_broken_policy(gw):
    (gw.policy_dir / "gateway" / "zz_broken.rego").write_text(BROKEN_POLICY)


def _remove_broken_policy(gw):
    (gw.policy_dir / "gateway" / "zz_broken.rego").unlink()


# The slow policy: decision.rego's decision gets a body that burns CPU first.
SLOW_RULE = """package gateway

# bench/faults.py slow-policy row: every decision burns CPU first.
faults_slow_burn if {
	count([x | some x in numbers.range(1, %d); x %% 7 == 3]) >= 0
}
"""
_DECISION_HEAD = "decision := decide("


def _push_slow_policy(gw):
    decision = gw.policy_dir / "gateway" / "decision.rego"
    gw.ctx["decision_rego"] = text = decision.read_text()
    if _DECISION_HEAD not in text:
        raise RuntimeError("decision.rego changed: the slow-policy row cannot find `decision := decide(`")
    (gw.policy_dir / "gateway" / "zz_slow.rego").write_text(SLOW_RULE % SLOW_N)
    gw.ctx["slow_from"] = time.time()
    # Rule first, then its use: every state the reload can read compiles.
    tmp = decision.with_suffix(".tmp")
    body = text.replace(_DECISION_HEAD, "decision := d if {\n\tfaults_slow_burn\n\td := decide(", 1)
    body = body.replace("\tdata.gateway.settings,\n)", "\tdata.gateway.settings,\n\t)\n}", 1)
    tmp.write_text(body)
    os.replace(tmp, decision)


def _remove_slow_policy(gw):
    decision = gw.policy_dir / "gateway" / "decision.rego"
    tmp = decision.with_suffix(".tmp")
    tmp.write_text(gw.ctx["decision_rego"])
    os.replace(tmp, decision)
    gw.ctx["slow_until"] = time.time()
    time.sleep(1.0)  # the reload (0.5 s poll) sees the good decision.rego before the rule goes
    (gw.policy_dir / "gateway" / "zz_slow.rego").unlink()


def _decision_lines(gw):
    """The PDP's decision-log lines so far (its output file), parsed."""
    out = []
    for line in gw.pdp.output().splitlines():
        start = line.find('{"decision_id"')
        if start >= 0:
            try:
                out.append(json.loads(line[start:]))
            except ValueError:
                pass
    return out


def _slow_check(gw, ctx):
    # eval_ms of the decisions made under the slow policy (decision-log lines of the revoked
    # stream's path and the load's, while it was served).
    evals = sorted(
        e["eval_ms"]
        for e in _decision_lines(gw)
        if e.get("eval_ms", 0) > 50 and e.get("path") in (LOAD_PATH, REVOKED_PATH)
    )
    return {
        "slow_decisions": len(evals),
        "slow_eval_ms_p50": round(evals[len(evals) // 2], 1) if evals else None,
        "slow_eval_ms_max": round(evals[-1], 1) if evals else None,
    }


def _kill_opa(gw):
    gw.opa.proc.kill()
    gw.opa.proc.wait(5)


def _restart_opa(gw):
    gw.opa = Server(gw.opa_argv, gw.opa.port)


def _opa_check(gw, ctx):
    """Admitted with OPA down: 2xx sent more than a lease lifetime (1 s) plus 0.5 s after the kill."""
    late = [
        s
        for stream, t, s, _ in ctx["results"]
        if stream == "user" and ctx["injected"] + 1.5 <= t < ctx["restored"] and 200 <= s < 300
    ]
    return {"admitted_without_policy": len(late)}


def _start_resetter(gw):
    """A resetting instance beside the second echo: the routes file names both, SIGHUP.
    (A new cluster spec is a new cluster: none of the earlier rows' ejections carry over.)"""
    from tests.support.resetting_upstream import ResettingUpstream

    gw.ctx["reset_log"] = log = gw.workdir / "resetter.log"
    log.write_text("")
    gw.ctx["resetter"] = reset = ResettingUpstream(free_port(), log)
    both = f'["http://127.0.0.1:{reset.port}", "http://127.0.0.1:{gw.upstreams[1].port}"]'
    text, n = re.subn(r"endpoints: \$\{BLOCKCHAIN_CORE_URL[^}]*\}", f"endpoints: {both}", gw.routes_good, count=1)
    if n != 1:
        raise RuntimeError("routes.default.yaml changed: the upstream-reset row cannot name its instances")
    _reload_routes(gw, text)


def _stop_resetter(gw):
    _reload_routes(gw, gw.routes_good)
    gw.ctx["resetter"].stop()


def _reload_routes(gw, text):
    """Writes the routes file, SIGHUP, and waits (bounded) until the worker says it reloaded."""
    before = gw.proxy.output().count("routes reloaded")
    gw.routes_file.write_text(text)
    gw.proxy.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while gw.proxy.output().count("routes reloaded") <= before and time.monotonic() < deadline:
        time.sleep(0.02)


def _post_load(gw):
    body = {"to": "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb", "amount": 1}
    return SideLoad(
        20.0,
        lambda n: (
            "POST",
            gw.api(POST_PATH[len("/api/v1") :]),
            {"json": body, "headers": {"authorization": f"Bearer {gw.token}"}},
        ),
    )


def _reset_check(gw, ctx):
    reached = {}
    for line in ctx["reset_log"].read_text().splitlines():
        method, path, rid = (line.split() + ["-", "-", "-"])[:3]
        reached.setdefault(method, []).append(rid)
    side = ctx["side"]
    by_id = {r[3]: r for r in side}
    posts_at_reset = [by_id[rid] for rid in reached.get("POST", []) if rid in by_id]
    return {
        "posts_sent": len(side),
        "posts_reaching_reset": len(posts_at_reset),
        # a POST that reached the resetter and was then answered 2xx went to another instance too
        "posts_retried": sum(1 for r in posts_at_reset if 200 <= r[1] < 300),
        "posts_502_problem_json": sum(
            1 for r in posts_at_reset if r[1] == 502 and r[2].startswith("application/problem+json")
        ),
        "gets_reaching_reset": len(reached.get("GET", [])),
        "posts_no_answer": sum(1 for r in side if r[1] == 0),
        "slowest_post_s": round(max((r[4] for r in side), default=0.0), 2),
    }


def _graceful_restart_proxy(gw):
    """A second proxy binds the same port (SO_REUSEPORT), then the old one gets SIGTERM."""
    old = gw.proxy
    listening = listeners(gw.proxy_port)
    gw.proxy = gw.start_proxy()
    # The port answers already (the old proxy): wait for the new worker's own socket.
    deadline = time.monotonic() + 30
    while listeners(gw.proxy_port) <= listening and time.monotonic() < deadline:
        time.sleep(0.05)
    old.proc.send_signal(signal.SIGTERM)
    gw._old_proxy = old


def _reap_old_proxy(gw):
    old = getattr(gw, "_old_proxy", None)
    if old is not None:
        old.stop(timeout=15)


BAD_ROUTES = """clusters:
  blockchain_core: {endpoints: "${BLOCKCHAIN_CORE_URL}"}
routes:
  - {name: chain, match: {prefix: /api/v1/chain}, cluster: nowhere}
"""
RELOADED_MARK = "x-faults-routes-reloaded"


def _bad_routes(gw):
    gw.ctx["failed_before"] = gw.proxy.output().count("routes reload failed")
    gw.routes_file.write_text(BAD_ROUTES)
    gw.proxy.signal(signal.SIGHUP)


def _good_routes_again(gw):
    # The good file again, with one visible change, so the check sees the reload took.
    marked = gw.routes_good.replace(
        "    cluster: blockchain_core\n",
        f'    cluster: blockchain_core\n    response_headers: {{add: {{{RELOADED_MARK}: "yes"}}}}\n',
        1,
    )
    if marked == gw.routes_good:
        raise RuntimeError("routes.default.yaml changed: the routes row cannot mark its reload")
    gw.routes_file.write_text(marked)
    gw.proxy.signal(signal.SIGHUP)


def _routes_check(gw, ctx):
    deadline = time.monotonic() + 5
    marked = False
    while time.monotonic() < deadline and not marked:
        try:
            r = requests.get(gw.url, headers={"authorization": f"Bearer {gw.token}"}, timeout=3)
            marked = r.headers.get(RELOADED_MARK) == "yes"
        except requests.RequestException:
            pass
        time.sleep(0.1)
    gw.routes_file.write_text(gw.routes_good)
    gw.proxy.signal(signal.SIGHUP)
    return {
        "bad_file_refused": gw.proxy.output().count("routes reload failed") > ctx["failed_before"],
        "good_file_reloaded": marked,
    }


def _break_cert(gw):
    gw.ctx["failed_before"] = gw.proxy.output().count("certificate reload failed")
    Path(gw.cert_path).write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    time.sleep(0.2)
    gw.proxy.signal(signal.SIGHUP)  # the watcher (0.5 s) and a signal: both must keep the last good pair
    gw.ctx["serial_during"] = served_serial(gw.https_port, str(gw.ca.cert_path))


def _good_cert_again(gw):
    Path(gw.cert_path).write_bytes(gw.cert_good)


def _cert_check(gw, ctx):
    return {
        "bad_cert_refused": gw.proxy.output().count("certificate reload failed") > ctx["failed_before"],
        "serial_during": ctx.get("serial_during"),
        "serial_after": served_serial(gw.https_port, str(gw.ca.cert_path)),
    }


def _kill_mongo(gw):
    gw.mongo.proc.kill()
    gw.mongo.proc.wait(5)


def _restart_mongo(gw):
    from tests.support.mongo_server import start_mongo

    gw.mongo = start_mongo(gw.mongo.port, gw.mongo.workdir)


def _signup_load(gw):
    """Half the sign-ups by an admin (audited: the audit record goes first), half open."""
    tag = secrets.token_hex(3)

    def make(n):
        body = {"email": f"signup-{tag}-{n}@faults.example"}
        headers = {"authorization": f"Bearer {gw.admin}"} if n % 2 == 0 else {}
        return "POST", gw.api("/users"), {"json": body, "headers": headers}

    return SideLoad(10.0, make)


def _accounts_check(gw, ctx):
    side = ctx["side"]
    answered = {r[5]["email"]: r for r in side}
    db = gw.mongo_db()
    deadline = time.monotonic() + 20
    while True:  # the restarted server answers the bench's own client soon; bounded anyway
        try:
            users = {u["email"]: u for u in db.users.find({"email": {"$in": list(answered)}})}
            audit = {a["target"] for a in db.audit.find({"action": "user.create", "target": {"$in": list(answered)}})}
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    created = [e for e, r in answered.items() if r[1] == 201]
    admin_made = {e for e in users if int(e.split("-")[2].split("@")[0]) % 2 == 0}
    statuses = collections.Counter(r[1] for r in side)
    return {
        "signups": dict(sorted(statuses.items())),
        "lost_users": sum(1 for e in created if e not in users),  # told 201, not there
        "incomplete_users": sum(1 for u in users.values() if not {"email", "roles", "plan"} <= set(u)),
        "created_though_503": sum(1 for e, r in answered.items() if r[1] != 201 and e in users),
        "admin_users_unaudited": sum(1 for e in admin_made if e not in audit),
        "problem_json_503s": sum(1 for r in side if r[1] == 503 and r[2].startswith("application/problem+json")),
        "no_answer": statuses.get(0, 0),
    }


def _auth_ready(gw, restored):
    """Sign-in serves again: the PDP's /v1/ready/auth is 200 (each worker's MongoDB client finds
    the restarted server on its own heartbeat). Seconds from the restore, bounded at 60."""
    out = {"auth_ready_after_s": None}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(gw.pdp.url + "/v1/ready/auth", timeout=5).status_code == 200:
                out["auth_ready_after_s"] = round(time.time() - restored, 1)
                break
        except requests.RequestException:
            pass
        time.sleep(0.25)
    # ... and through the gateway: the PDP's dependency 503s ejected the auth cluster's
    # only instance (30 s) and may have opened its breaker (10 s). With panic routing
    # (proxy/cluster.py) the breaker's probe reaches the instance, so sign-in through
    # the gateway serves again within open_s of the PDP, not after the ejection.
    out["gateway_login_after_s"] = None
    deadline = time.monotonic() + 20
    while True:
        r = requests.post(gw.api("/auth/login"), json={"email": gw.login_emails[0]}, timeout=5)
        out["gateway_login_then"] = (
            r.status_code if r.status_code != 503 else "503 " + r.json().get("type", "").rsplit("/", 1)[-1]
        )
        if r.status_code != 503:
            out["gateway_login_after_s"] = round(time.time() - restored, 1)
            break
        if time.monotonic() > deadline:
            gw.proxy.stop()  # still down: the next row starts on a fresh proxy
            gw.proxy = gw.start_proxy()
            break
        time.sleep(0.5)
    return out


def _stop_mail(gw):
    gw.ctx["mails_before"] = len(list(gw.mail.dir.glob("*.eml")))
    gw.mail.stop()


def _restart_mail(gw):
    from tests.support.smtp_server import start_smtp

    gw.mail = start_smtp(gw.mail.port, str(gw.mail.dir))


def _login_load(gw):
    return SideLoad(
        10.0, lambda n: ("POST", gw.api("/auth/login"), {"json": {"email": gw.login_emails[n % LOGIN_USERS]}})
    )


def _login_snapshot(gw):
    gw.ctx["mails_at_start"] = len(list(gw.mail.dir.glob("*.eml")))
    gw.ctx["links_at_start"] = len(list(gw.redis_client().scan_iter("lucid:auth:ml:*")))


def _mail_check(gw, ctx):
    side = ctx["side"]
    time.sleep(0.5)  # the last mails land
    statuses = collections.Counter(r[1] for r in side)
    mails = len(list(gw.mail.dir.glob("*.eml"))) - ctx["mails_at_start"]
    links = len(list(gw.redis_client().scan_iter("lucid:auth:ml:*"))) - ctx["links_at_start"]
    during = [r for r in side if ctx["injected"] + 0.2 <= r[0] < ctx["restored"]]
    return {
        "logins": dict(sorted(statuses.items())),
        "logins_during": dict(sorted(collections.Counter(r[1] for r in during).items())),
        "mails_sent": mails,
        "links_stored": links,
        # a link stored for which no mail went out (each 202 stores one link and sends one mail)
        "links_without_mail": max(0, links - mails),
        "problem_json_503s": sum(1 for r in side if r[1] == 503 and r[2].startswith("application/problem+json")),
    }


FAULTS = [
    Fault(
        "redis-kill9",
        "Redis kill -9, restarted after FAULT_S",
        _kill_redis,
        _restart_redis,
        _redis_lost,
        _redis_keys,
        tight=True,
    ),
    Fault(
        "redis-sigstop",
        "Redis SIGSTOP for FAULT_S, then SIGCONT",
        _stop_redis,
        _cont_redis,
        _redis_lost,
        _redis_keys,
        tight=True,
    ),
    Fault(
        "redis-flushall",
        "FLUSHALL under load, quota leases on (the default)",
        _flushall,
        _nothing,
        _redis_lost,
        _redis_keys,
        tight=True,
    ),
    Fault("pdp-one-worker", "one of 2 PDP workers kill -9 (gunicorn forks another)", _kill_workers(1), _nothing),
    Fault(
        "pdp-all-workers", "both PDP workers kill -9", _kill_workers(2), _nothing, min_recover_s=10.0
    ),  # new workers compile the policy before they answer: seconds
    Fault(
        "policy-broken",
        "a broken .rego pushed into POLICY_DIR, removed after FAULT_S",
        _push_broken_policy,
        _remove_broken_policy,
    ),
    Fault(
        "policy-slow",
        "a policy whose every decision burns ~200 ms of CPU, for FAULT_S",
        _push_slow_policy,
        _remove_slow_policy,
        check=_slow_check,
        # The proxy answers within PDP_QUEUE_TIMEOUT_MS + PDP_TIMEOUT_MS (3 s + 1 s): the load
        # waits that long to see the answer; the backlog drains after the restore.
        client_timeout_s=5.0,
        min_recover_s=5.0,
        min_fault_s=4.0,
        cold=True,
    ),
    Fault(
        "upstream-killed",
        "one of 2 upstream instances kill -9, restarted after FAULT_S",
        _kill_upstream,
        _restart_upstream,
    ),
    Fault(
        "upstream-hung",
        "one of 2 upstream instances SIGSTOP (accepts, never answers), SIGCONT after FAULT_S",
        _hang_upstream,
        _resume_upstream,
    ),
    Fault(
        "upstream-reset",
        "one of 2 instances answers a 200 head then RSTs (routes reloaded to name it); POSTs too",
        _start_resetter,
        _stop_resetter,
        side=_post_load,
        check=_reset_check,
    ),
    Fault(
        "proxy-graceful-restart",
        "new proxy on the same port, old one SIGTERM (drain)",
        _graceful_restart_proxy,
        _reap_old_proxy,
    ),
    Fault(
        "routes-bad-reload",
        "a routes file naming an unknown cluster, SIGHUP; the good one after FAULT_S",
        _bad_routes,
        _good_routes_again,
        check=_routes_check,
    ),
    Fault(
        "cert-broken",
        "the certificate file replaced by a broken one (watched, and SIGHUP); HTTPS load",
        _break_cert,
        _good_cert_again,
        https=True,
        check=_cert_check,
    ),
    Fault(
        "mongodb-kill9",
        "SecantusDB kill -9, restarted on its data after FAULT_S; sign-ups beside",
        _kill_mongo,
        _restart_mongo,
        side=_signup_load,
        check=_accounts_check,
        settle=_auth_ready,
    ),
    Fault(
        "smtp-down",
        "the mail sink stopped, restarted after FAULT_S; magic-link logins beside",
        _stop_mail,
        _restart_mail,
        snapshot=_login_snapshot,
        side=_login_load,
        check=_mail_check,
        settle=_auth_ready,
    ),
    Fault(
        "opa-killed",
        "PDP_ENGINE=opa: the OPA server kill -9, restarted after FAULT_S",
        _kill_opa,
        _restart_opa,
        check=_opa_check,
        gateway="opa",
        min_recover_s=5.0,
    ),
]


# --- measuring ------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    name: str
    what: str
    during: dict
    after: dict
    recover_s: float | None  # None: still failing at the end
    wrongly_admitted: int
    lost: str
    not_sent: int
    failing_s: float = 0.0  # first to last failed request after the injection
    statuses: dict = dataclasses.field(default_factory=dict)  # every status of the row's streams
    tight: dict | None = None  # the tight-quota key: limit, admitted (before the fault, in all)
    https: dict | None = None  # the HTTPS stream's classes, whole row
    cold: dict | None = None  # the cold stream (each request a PDP decision): classes, slowest
    checks: dict = dataclasses.field(default_factory=dict)  # the row's own figures
    decision_log: dict | None = None  # revoked requests answered 401 vs their decision-log lines
    slowest_answer_ms: int = 0  # the longest any answered request of the load took

    def failed_after(self) -> int:
        return self.after["5xx"] + self.after["err"]


def _classes(results) -> dict:
    c = {"2xx": 0, "4xx": 0, "5xx": 0, "err": 0}
    for status in results:
        if 200 <= status < 300:
            c["2xx"] += 1
        elif 400 <= status < 500:
            c["4xx"] += 1
        elif status >= 500:
            c["5xx"] += 1
        else:
            c["err"] += 1
    return c


def read_results(path: Path):
    lines = path.read_text().splitlines()
    t0 = float(lines[0].split()[1])
    out = []
    for line in lines[1:]:
        if line.strip():
            stream, sent, status, latency = line.split()
            out.append((stream, t0 + float(sent), int(status), float(latency)))
    return out


def _revoked_decision_lines(gw, since: float, until: float) -> int:
    """Decision-log lines of the revoked stream's path logged between two wall-clock times."""
    n = 0
    for entry in _decision_lines(gw):
        if entry.get("path") != REVOKED_PATH:
            continue
        stamp = calendar.timegm(time.strptime(entry["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        if since - 1 <= stamp <= until + 1:
            n += 1
    return n


def run_fault(gw: Gateway, fault: Fault, rate: float, fault_s: float, recover_s: float, lead_s: float = 1.0) -> Row:
    gw.ctx = {}
    out = gw.workdir / f"load-{fault.name}.txt"
    if fault.tight:
        lead_s = max(lead_s, TIGHT_LEAD_S)  # the tight key is spent before the fault
    recover_s = max(recover_s, fault.min_recover_s)
    fault_s = max(fault_s, fault.min_fault_s)
    duration = lead_s + fault_s + recover_s
    revoked_url = f"http://127.0.0.1:{gw.proxy_port}{REVOKED_PATH}"
    argv = [
        sys.executable,
        "-m",
        "bench.openloop",
        "--url",
        gw.url,
        "--duration",
        str(duration),
        "--out",
        str(out),
        "--timeout",
        str(fault.client_timeout_s),
        "--stream",
        f"user:{rate}:{gw.token}",
        "--stream",
        f"revoked:{max(2.0, rate / 20)}:{gw.revoked}",
        "--stream-url",
        f"revoked={revoked_url}",
    ]
    if fault.tight:
        tight_token = mint(
            gw.secret, f"tight-{fault.name}-{secrets.token_hex(3)}", f"tight-{fault.name}", plan=TIGHT_PLAN
        )
        argv += ["--stream", f"tight:{TIGHT_RATE}:{tight_token}"]
    if fault.cold:
        argv += [
            "--stream",
            f"cold:{max(2.0, rate / 2)}:{gw.token}",
            "--stream-url",
            f"cold=http://127.0.0.1:{gw.proxy_port}{LOAD_PATH}?cold={{n}}",
        ]
    if fault.https:
        argv += [
            "--stream",
            f"https:{max(2.0, rate / 4)}:{gw.token}",
            "--ca",
            str(gw.ca.cert_path),
            "--stream-url",
            f"https=https://127.0.0.1:{gw.https_port}{LOAD_PATH}",
        ]
    before = fault.snapshot(gw) if fault.snapshot else None
    side = fault.side(gw) if fault.side else None
    load = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    started = time.time()
    try:
        ready, _, _ = select.select([load.stdout], [], [], 60)
        if not ready or not load.stdout.readline().startswith("t0 "):
            raise RuntimeError("bench.openloop did not start")
        if side is not None:
            side.start()
        time.sleep(lead_s)
        injected = time.time()
        fault.inject(gw)
        time.sleep(max(0.0, injected + fault_s - time.time()))
        restored = time.time()
        fault.restore(gw)
        load.wait(timeout=duration + 30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait(5)
        side_results = side.stop() if side is not None else None
    results = read_results(out)
    user = [r for r in results if r[0] == "user" and r[2] != -1]
    during = _classes(s for _, t, s, _ in user if injected <= t < restored)
    after = _classes(s for _, t, s, _ in user if t >= restored)
    end = max(t for _, t, _, _ in user)
    bad = [t for _, t, s, _ in user if t >= restored and not 200 <= s < 300]
    recovered = 0.0 if not bad else round(max(bad) - restored, 2)
    if bad and end - max(bad) < 1.0:
        recovered = None
    failed = [t for _, t, s, _ in user if t >= injected and not 200 <= s < 300]
    failing = round(max(failed) - min(failed), 2) if failed else 0.0
    admitted = sum(1 for r in results if r[0] == "revoked" and 200 <= r[2] < 300)
    lost = fault.lost(gw, before) if fault.lost else ""
    statuses = collections.Counter(str(r[2]) for r in results if r[2] != -1)
    slowest_ms = max((r[3] for r in results if r[2] > 0), default=0.0)
    if side_results is not None:
        statuses.update(str(r[1]) for r in side_results)
    row = Row(
        fault.name,
        fault.what,
        during,
        after,
        recovered,
        admitted,
        lost,
        sum(1 for r in results if r[2] == -1),
        failing,
        dict(sorted(statuses.items())),
        slowest_answer_ms=round(slowest_ms),
    )
    if fault.tight:
        tight = [r for r in results if r[0] == "tight" and r[2] != -1]
        row.tight = {
            "limit": TIGHT_LIMIT,
            "admitted_before_fault": sum(1 for _, t, s, _ in tight if t < injected and 200 <= s < 300),
            "admitted": sum(1 for _, _, s, _ in tight if 200 <= s < 300),
            "sent": len(tight),
        }
        row.tight["over"] = max(0, row.tight["admitted"] - TIGHT_LIMIT)
    if fault.cold:
        argv += [
            "--stream",
            f"cold:{max(2.0, rate / 2)}:{gw.token}",
            "--stream-url",
            f"cold=http://127.0.0.1:{gw.proxy_port}{LOAD_PATH}?cold={{n}}",
        ]
    if fault.cold:
        cold = [r for r in results if r[0] == "cold" and r[2] != -1]
        row.cold = {
            "during": _classes(s for _, t, s, _ in cold if injected <= t < restored),
            "after": _classes(s for _, t, s, _ in cold if t >= restored),
            "slowest_ms": round(max((r[3] for r in cold if r[2] > 0), default=0.0)),
        }
    if fault.https:
        row.https = _classes(s for name, _, s, _ in results if name == "https" and s != -1)
    revoked_401 = sum(1 for r in results if r[0] == "revoked" and r[2] == 401)
    time.sleep(0.3)  # the PDP's last lines reach its output file
    logged = _revoked_decision_lines(gw, started, time.time())
    row.decision_log = {"revoked_401": revoked_401, "lines": logged, "missing": max(0, revoked_401 - logged)}
    if fault.check:
        ctx = dict(gw.ctx, results=results, injected=injected, restored=restored, side=side_results)
        row.checks = fault.check(gw, ctx)
    if fault.settle:
        row.checks.update(fault.settle(gw, restored))
    return row


def format_table(rows) -> str:
    head = (
        f"{'fault':24} {'during 2xx/4xx/5xx/err':>24} {'after 2xx/4xx/5xx/err':>24} "
        f"{'recover s':>9} {'failing s':>9} {'wrong admits':>12}  lost"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        d = "/".join(str(r.during[k]) for k in ("2xx", "4xx", "5xx", "err"))
        a = "/".join(str(r.after[k]) for k in ("2xx", "4xx", "5xx", "err"))
        rec = "not yet" if r.recover_s is None else f"{r.recover_s:.2f}"
        lines.append(
            f"{r.name:24} {d:>24} {a:>24} {rec:>9} {r.failing_s:>9.2f} {r.wrongly_admitted:>12}  {r.lost or 'nothing'}"
        )
    lines.append("")
    for r in rows:
        extra = [f"statuses {r.statuses}", f"slowest answer {r.slowest_answer_ms} ms"]
        if r.tight:
            extra.append(f"tight quota {r.tight}")
        if r.https:
            extra.append(f"https {r.https}")
        if r.cold:
            extra.append(f"cold {r.cold}")
        if r.decision_log:
            extra.append(f"decision log {r.decision_log}")
        if r.checks:
            extra.append(f"checks {r.checks}")
        lines.append(f"{r.name}: " + "; ".join(extra))
    return "\n".join(lines)


def run_matrix(names=None, rate=100.0, fault_s=5.0, recover_s=5.0, log=print) -> list[Row]:
    chosen = [f for f in FAULTS if not names or f.name in names]
    workdir = Path(tempfile.mkdtemp(prefix="lucid-faults-"))
    rows = []
    try:
        for kind in ("main", "opa"):
            faults = [f for f in chosen if f.gateway == kind]
            if not faults:
                continue
            gw = Gateway(workdir / kind, engine="opa" if kind == "opa" else "wasm", accounts=kind == "main")
            try:
                for fault in faults:
                    row = run_fault(gw, fault, rate, fault_s, recover_s)
                    rows.append(row)
                    log(
                        f"faults: {row.name}: during {row.during} after {row.after} recover {row.recover_s} "
                        f"wrong admits {row.wrongly_admitted} lost {row.lost or 'nothing'} "
                        f"tight {row.tight} checks {row.checks}"
                    )
                    gw.wait_all_2xx()  # the next row starts from a healthy gateway
            finally:
                gw.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    order = {f.name: i for i, f in enumerate(FAULTS)}
    return sorted(rows, key=lambda r: order[r.name])


def main() -> int:
    names = [n for n in os.environ.get("FAULTS", "").split(",") if n]
    unknown = set(names) - {f.name for f in FAULTS}
    if unknown:
        print(f"FAULTS: unknown rows {sorted(unknown)}; known: {[f.name for f in FAULTS]}", file=sys.stderr)
        return 2
    rows = run_matrix(
        names,
        float(os.environ.get("FAULTS_RATE", "100")),
        float(os.environ.get("FAULT_S", "5")),
        float(os.environ.get("RECOVER_S", "5")),
        log=lambda m: print(m, file=sys.stderr),
    )
    print(format_table(rows))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
