"""The real PDP (`python -m pdp serve`, gunicorn + gevent) on a free loopback port."""

import time

import requests

from .ports import free_port
from .processes import Server, python_argv


def start_pdp(env: dict, workers: int | None = 2, timeout: float = 60.0, ready_path: str = "/v1/health") -> Server:
    """Starts the PDP and returns once a worker answers ready_path with 200.

    gunicorn's master listens before its workers have loaded the policy, so an
    open port alone does not mean the PDP can answer. AUTH_PORT in env is
    used as given, else a free port is picked; workers=None leaves
    PDP_WORKERS to env.
    """
    port = int(env.get("AUTH_PORT") or free_port())
    full = {"PDP_BIND_HOST": "127.0.0.1", **env, "AUTH_PORT": str(port)}
    if workers is not None:
        full["PDP_WORKERS"] = str(workers)
    server = Server(python_argv("-m", "pdp", "serve"), port, env=full)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url + ready_path, timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            pass
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the PDP did not come up:\n{server.output()[-3000:]}")
