"""`pdp serve`: the falcon app under gunicorn with gevent workers.

The app is built in each worker after fork (never preloaded: gevent patches
the worker after fork, and ssl/requests imported before that break).
"""
from __future__ import annotations

import os
import tempfile

from gunicorn.app.base import BaseApplication


def _child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


class PdpServer(BaseApplication):
    def __init__(self, settings, startup_bundle=None):
        self._settings = settings
        self._startup_bundle = startup_bundle
        super().__init__()

    def load_config(self):
        s = self._settings
        options = {
            "bind": f"{s.bind_host}:{s.port}",
            "workers": s.workers,
            "worker_class": "gevent",
            "worker_connections": s.worker_connections,
            "keepalive": 75,               # callers keep pooled connections open
            "timeout": 30,
            "graceful_timeout": 10,
            "limit_request_fields": 256,   # forward-auth carries the client's headers
            "accesslog": None,             # the decision log is the access record
            "errorlog": "-",
            "loglevel": "warning" if s.log_level == "info" else s.log_level,
            "child_exit": _child_exit,
            "proc_name": f"pdp:{s.service_name}",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import get_app
        return get_app(self._startup_bundle)


def serve(settings, startup_bundle=None) -> None:
    # Metrics from every worker are summed at scrape time (prometheus_client multiprocess).
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pdp-metrics-")
    PdpServer(settings, startup_bundle).run()
