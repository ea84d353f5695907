"""`make faults`: open-loop load through the whole gateway, one fault at a time.

The gateway is what `make run` starts, each part on its own free loopback
port: redis-server (persistence as make run: RDB snapshots, no AOF), the PDP
(2 gunicorn workers, the shipped policies, quotas on with limits the load
cannot reach), two echo stand-ins behind the blockchain_core cluster, and the
proxy. bench/openloop.py sends a fixed rate of signed-in requests
(GET /api/v1/chain/...) plus a trickle with a revoked token, which must never
be admitted. Each row: a quiet lead-in, the fault for FAULT_S, then recovery
for RECOVER_S. Printed per row: 2xx/4xx/5xx/errors during the fault and
after it, time to recover, wrongly admitted requests, and what was lost.

FAULTS_RATE (requests/s, default 100), FAULT_S (5), RECOVER_S (5) and FAULTS
(comma-separated row names, default all) tune it. tests/faults runs it short.
"""
from __future__ import annotations

import dataclasses
import json
import os
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

REDIS_ARGS = ("--save", "60 1000")   # as make run (devenv/run.py)
LOAD_PATH = "/api/v1/chain/blocks"
REVOKED_JTI = "faults-revoked"


def mint(secret: str, sub: str, jti: str) -> str:
    import jwt
    now = int(time.time())
    return jwt.encode({"sub": sub, "roles": ["user"], "plan": "enterprise", "mfa": True, "jti": jti,
                       "iat": now, "exp": now + 3600}, secret, algorithm="HS256",
                      headers={"typ": "at+jwt"})


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


class Gateway:
    """The make run processes on free ports; stop() ends every one of them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.secret = secrets.token_hex(32)
        self.policy_dir = workdir / "policies"
        shutil.copytree(ROOT / "policies", self.policy_dir)
        self.redis = start_redis(REDIS_ARGS)
        self.upstreams = [start_echo("blockchain-core-1"), start_echo("blockchain-core-2")]
        self.pdp_env = {
            "JWT_SECRET_KEY": self.secret, "REDIS_URL": self.redis.redis_url,
            "POLICY_DIR": str(self.policy_dir), "POLICY_RELOAD_INTERVAL_S": "0.5",
            "RATE_LIMIT_REQUESTS_PER_MINUTE": "10000000", "RATE_LIMIT_BURST_SIZE": "10000000",
            "LOG_LEVEL": "warning", "JWT_REVOCATION_SYNC_S": "0.5",
        }
        self.pdp = start_pdp(self.pdp_env, workers=2, timeout=120, ready_path="/v1/ready")
        self.proxy_port = free_port()
        self.proxy = self.start_proxy()
        self.token = mint(self.secret, "load", "faults-load")
        self.revoked = mint(self.secret, "mallory", REVOKED_JTI)
        RedisDenylist(self.redis_client()).revoke("", REVOKED_JTI, 3600)
        self.wait_all_2xx()

    def redis_client(self):
        return redis.Redis.from_url(self.redis.redis_url, socket_timeout=2)

    def start_proxy(self) -> Server:
        urls = ",".join(f"http://127.0.0.1:{u.port}" for u in self.upstreams)
        env = {"HTTP_PORT": str(self.proxy_port), "HTTPS_PORT": str(free_port()), "SSL_ENABLED": "false",
               "LISTEN_HOST": "127.0.0.1", "PDP_URL": self.pdp.url, "PROXY_WORKERS": "1",
               "BLOCKCHAIN_CORE_URL": urls, "SESSION_MANAGEMENT_URL": urls, "AUTH_SERVICE_URL": urls,
               "TRON_PAYMENT_URL": urls, "LOG_LEVEL": "warning", "ACCESS_LOG": "false",
               "GRACE_PERIOD_S": "10"}
        return Server([sys.executable, "-m", "proxy"], self.proxy_port, env=env, ready_timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}{LOAD_PATH}"

    def status(self, token: str) -> int:
        try:
            return requests.get(self.url, headers={"authorization": f"Bearer {token}"}, timeout=3).status_code
        except requests.RequestException:
            return 0

    def wait_all_2xx(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.status(self.token) == 200 for _ in range(4)) and self.status(self.revoked) == 401:
                return
            time.sleep(0.2)
        raise RuntimeError("the gateway did not settle: user requests are not all 200 "
                           f"(last {self.status(self.token)}, revoked {self.status(self.revoked)})")

    def stop(self) -> None:
        for server in [self.proxy, self.pdp, *self.upstreams, self.redis]:
            try:
                server.stop()
            except Exception:
                pass


# --- the faults: inject() then restore(), each returns what "lost" means for it -----

@dataclasses.dataclass
class Fault:
    name: str
    what: str
    inject: object
    restore: object
    lost: object = None          # (gw, before) -> str, "" when nothing was lost
    snapshot: object = None      # gw -> before


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


FAULTS = [
    Fault("redis-kill9", "Redis kill -9, restarted after FAULT_S", _kill_redis, _restart_redis,
          _redis_lost, _redis_keys),
    Fault("redis-sigstop", "Redis SIGSTOP for FAULT_S, then SIGCONT", _stop_redis, _cont_redis,
          _redis_lost, _redis_keys),
    Fault("redis-flushall", "FLUSHALL while under load (quota leases: not landed yet)", _flushall, _nothing,
          _redis_lost, _redis_keys),
    Fault("pdp-one-worker", "one of 2 PDP workers kill -9 (gunicorn forks another)", _kill_workers(1), _nothing),
    Fault("pdp-all-workers", "both PDP workers kill -9", _kill_workers(2), _nothing),
    Fault("policy-broken", "a broken .rego pushed into POLICY_DIR, removed after FAULT_S",
          _push_broken_policy, _remove_broken_policy),
    Fault("upstream-killed", "one of 2 upstream instances kill -9, restarted after FAULT_S",
          _kill_upstream, _restart_upstream),
    Fault("upstream-hung", "one of 2 upstream instances SIGSTOP (accepts, never answers), SIGCONT after FAULT_S",
          _hang_upstream, _resume_upstream),
    Fault("proxy-graceful-restart", "new proxy on the same port, old one SIGTERM (drain)",
          _graceful_restart_proxy, _reap_old_proxy),
]


# --- measuring ------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    name: str
    what: str
    during: dict
    after: dict
    recover_s: float | None      # None: still failing at the end
    wrongly_admitted: int
    lost: str
    not_sent: int
    failing_s: float = 0.0       # first to last failed request after the injection

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


def run_fault(gw: Gateway, fault: Fault, rate: float, fault_s: float, recover_s: float,
              lead_s: float = 1.0) -> Row:
    out = gw.workdir / f"load-{fault.name}.txt"
    duration = lead_s + fault_s + recover_s
    load = subprocess.Popen(
        [sys.executable, "-m", "bench.openloop", "--url", gw.url, "--duration", str(duration),
         "--out", str(out), "--stream", f"user:{rate}:{gw.token}",
         "--stream", f"revoked:{max(2.0, rate / 20)}:{gw.revoked}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        before = fault.snapshot(gw) if fault.snapshot else None
        ready, _, _ = select.select([load.stdout], [], [], 60)
        if not ready or not load.stdout.readline().startswith("t0 "):
            raise RuntimeError("bench.openloop did not start")
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
    return Row(fault.name, fault.what, during, after, recovered, admitted, lost,
               sum(1 for r in results if r[2] == -1), failing)


def format_table(rows) -> str:
    head = (f"{'fault':24} {'during 2xx/4xx/5xx/err':>24} {'after 2xx/4xx/5xx/err':>24} "
            f"{'recover s':>9} {'failing s':>9} {'wrong admits':>12}  lost")
    lines = [head, "-" * len(head)]
    for r in rows:
        d = "/".join(str(r.during[k]) for k in ("2xx", "4xx", "5xx", "err"))
        a = "/".join(str(r.after[k]) for k in ("2xx", "4xx", "5xx", "err"))
        rec = "not yet" if r.recover_s is None else f"{r.recover_s:.2f}"
        lines.append(f"{r.name:24} {d:>24} {a:>24} {rec:>9} {r.failing_s:>9.2f} {r.wrongly_admitted:>12}  {r.lost or 'nothing'}")
    return "\n".join(lines)


def run_matrix(names=None, rate=100.0, fault_s=5.0, recover_s=5.0, log=print) -> list[Row]:
    chosen = [f for f in FAULTS if not names or f.name in names]
    workdir = Path(tempfile.mkdtemp(prefix="lucid-faults-"))
    rows = []
    gw = Gateway(workdir)
    try:
        for fault in chosen:
            row = run_fault(gw, fault, rate, fault_s, recover_s)
            rows.append(row)
            log(f"faults: {row.name}: during {row.during} after {row.after} recover {row.recover_s} "
                f"wrong admits {row.wrongly_admitted} lost {row.lost or 'nothing'}")
            gw.wait_all_2xx()   # the next row starts from a healthy gateway
    finally:
        gw.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> int:
    names = [n for n in os.environ.get("FAULTS", "").split(",") if n]
    unknown = set(names) - {f.name for f in FAULTS}
    if unknown:
        print(f"FAULTS: unknown rows {sorted(unknown)}; known: {[f.name for f in FAULTS]}", file=sys.stderr)
        return 2
    rows = run_matrix(names, float(os.environ.get("FAULTS_RATE", "100")),
                      float(os.environ.get("FAULT_S", "5")), float(os.environ.get("RECOVER_S", "5")),
                      log=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
