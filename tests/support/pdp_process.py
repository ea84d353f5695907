"""The real PDP (`python -m pdp serve`, gunicorn + gevent) on a free loopback port."""
import time

import requests

from .ports import free_port
from .processes import Server, python_argv


def start_pdp(env: dict, workers: int = 2, timeout: float = 60.0) -> Server:
    """Starts the PDP and returns once a worker answers /v1/health.

    gunicorn's master listens before its workers have loaded the policy, so an
    open port alone does not mean the PDP can answer.
    """
    port = free_port()
    full = {"AUTH_PORT": str(port), "PDP_BIND_HOST": "127.0.0.1", "PDP_WORKERS": str(workers), **env}
    server = Server(python_argv("-m", "pdp", "serve"), port, env=full)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url + "/v1/health", timeout=5).status_code == 200:
                return server
        except requests.RequestException:
            pass
        if server.proc.poll() is not None:
            break
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the PDP did not come up:\n{server.output()[-3000:]}")
