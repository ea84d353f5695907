"""`make bench-auth`: what the sign-in API costs, against real processes.

Starts Redis, SecantusDB, the mail sink and a PDP (2 gunicorn workers) as the
tests do (tests/accounts/stack.py), then times, from N client threads:
  - refresh: POST /api/v1/auth/refresh, each thread rotating its own session;
  - login:   POST /api/v1/auth/login (202, one mail sent over SMTP each);
  - login-none: the same for addresses without an account (no mail; the SMTP
             conversation is rehearsed, so the two should cost about the same);
  - status:  GET /api/v1/auth/status with an access token (verify only).
Prints requests/s and p50/p99 latency for each. A benchmark: it asserts
nothing. SecantusDB is not MongoDB: the Mongo-bound numbers (login, refresh)
say what this machine's dev stack does, not what production will.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.accounts.stack import Stack  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
THREADS = int(os.environ.get("BENCH_THREADS", "8"))


def _run(label: str, make_call, threads: int = THREADS, seconds: float = SECONDS) -> None:
    def worker(i):
        call = make_call(i)
        session = requests.Session()
        latencies, errors = [], 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            ok = call(session)
            latencies.append(time.perf_counter() - started)
            errors += 0 if ok else 1
        return latencies, errors

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    latencies = sorted(x for r, _ in results for x in r)
    errors = sum(e for _, e in results)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0
    print(
        f"  {label:<10} {len(latencies) / seconds:8.1f} req/s   p50 {statistics.median(latencies) * 1000:7.1f} ms"
        f"   p99 {p99 * 1000:7.1f} ms   errors {errors}   ({threads} threads, {seconds:.0f} s)"
    )


def main() -> int:
    stack = Stack(
        workers=2,
        AUTH_LOGIN_PER_IP_PER_MINUTE="100000",
        AUTH_LOGIN_PER_EMAIL_PER_HOUR="1000",
        AUTH_VERIFY_PER_IP_PER_MINUTE="100000",
    )
    try:
        users = [f"bench{i}@example.com" for i in range(THREADS)]
        sessions = []
        for email in users:
            stack.sign_up(email)
            sessions.append(stack.sign_in(email))
        print(
            f"sign-in API on one PDP (2 workers), Redis, SecantusDB "
            f"{os.environ.get('SECANTUSDB_VERSION', '0.7.0b3')}, aiosmtpd:"
        )

        def refresh(i):
            state = {"token": sessions[i]["refresh_token"]}

            def call(session):
                r = session.post(stack.api + "/auth/refresh", json={"refresh_token": state["token"]}, timeout=30)
                if r.status_code == 200:
                    state["token"] = r.json()["refresh_token"]
                return r.status_code == 200

            return call

        def login(i):
            def call(session):
                r = session.post(
                    stack.api + "/auth/login",
                    json={"email": users[i]},
                    timeout=30,
                    headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
                )
                return r.status_code == 202

            return call

        def status(i):
            header = {"Authorization": f"Bearer {sessions[i]['access_token']}"}

            def call(session):
                return session.get(stack.api + "/auth/status", headers=header, timeout=30).status_code == 200

            return call

        def login_unknown(i):
            def call(session):
                r = session.post(
                    stack.api + "/auth/login",
                    json={"email": f"ghost{i}@example.com"},
                    timeout=30,
                    headers={"X-Forwarded-For": f"198.51.100.{i + 101}"},
                )
                return r.status_code == 202

            return call

        _run("status", status)
        _run("refresh", refresh)
        _run("login", login)
        _run("login-none", login_unknown)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
