"""The real gunicorn-served PDP (2 gevent workers) for the quota tests, and tokens."""

import tempfile
import time
from pathlib import Path

from pdp.authn.tokens import sign_access_token
from tests.support.pdp_process import start_pdp as start_pdp_process
from tests.support.processes import Server

SECRET = "quota-tests-secret-0123456789abcdef-0123456789"
POLICIES = Path(__file__).parent / "policies"


def start_pdp(redis_url: str, workers: int = 2, **env) -> Server:
    return start_pdp_process(
        {
            "POLICY_DIR": str(POLICIES),
            "REDIS_URL": redis_url,
            "JWT_SECRET_KEY": SECRET,
            "DECISION_LOG": "off",
            "POLICY_RELOAD_INTERVAL_S": "0",
            "LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="pdp-quota-metrics-"),
            **env,
        },
        workers=workers,
    )


def token(sub: str, roles=("user",), plan: str = "free", secret: str = SECRET, **claims) -> str:
    now = int(time.time())
    body = {
        "sub": sub,
        "roles": list(roles),
        "plan": plan,
        "iat": now,
        "exp": now + 3 * 3600,  # parametrize mints at collection: outlive the suite
        **claims,
    }
    return sign_access_token(body, secret)


def check_body(path: str, bearer: str | None = None, client_ip: str = "203.0.113.7") -> dict:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return {
        "request": {
            "method": "GET",
            "path": path,
            "headers": headers,
            "host": "gateway.test",
            "scheme": "http",
            "client_ip": client_ip,
        }
    }
