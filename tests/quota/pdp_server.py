"""The real gunicorn-served PDP (2 gevent workers) for the quota tests, and tokens."""
import tempfile
import time
from pathlib import Path

import jwt

from tests.support.ports import free_port
from tests.support.processes import Server, python_argv

SECRET = "quota-tests-secret-0123456789abcdef-0123456789"
POLICIES = Path(__file__).parent / "policies"


def start_pdp(redis_url: str, workers: int = 2, **env) -> Server:
    port = free_port()
    full_env = {
        "AUTH_PORT": str(port), "PDP_BIND_HOST": "127.0.0.1", "PDP_WORKERS": str(workers),
        "POLICY_DIR": str(POLICIES), "REDIS_URL": redis_url, "JWT_SECRET_KEY": SECRET,
        "DECISION_LOG": "off", "POLICY_RELOAD_INTERVAL_S": "0", "LOG_LEVEL": "warning",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="pdp-quota-metrics-"),
        **env,
    }
    server = Server(python_argv("-m", "pdp", "serve"), port, env=full_env)
    # gunicorn's master listens before its workers are up; the first answer says they are.
    import requests
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url + "/v1/health", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("PDP did not answer /v1/health:\n" + server.output())


def token(sub: str, roles=("user",), plan: str = "free", secret: str = SECRET, **claims) -> str:
    now = int(time.time())
    body = {"sub": sub, "roles": list(roles), "plan": plan, "iat": now, "exp": now + 600,
            **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def check_body(path: str, bearer: str | None = None, client_ip: str = "203.0.113.7") -> dict:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return {"request": {"method": "GET", "path": path, "headers": headers,
                        "host": "gateway.test", "scheme": "http", "client_ip": client_ip}}
