"""`pdp serve`: the falcon app under gunicorn with gevent workers.

The app is built in each worker after fork (never preloaded: gevent patches
the worker after fork, and ssl/requests imported before that break).
"""

from __future__ import annotations

import os
import shutil
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
            "keepalive": 75,  # callers keep pooled connections open
            "timeout": 30,
            "graceful_timeout": 10,
            "limit_request_fields": 256,  # forward-auth carries the client's headers
            "accesslog": None,  # the decision log is the access record
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
    # A folder we made is ours to remove on the way out (one per start otherwise piles up
    # in /tmp); one the operator named is left alone.
    made_metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        made_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pdp-metrics-")
    grpc = _start_grpc(settings, startup_bundle) if settings.grpc_enabled else None
    master = os.getpid()
    try:
        PdpServer(settings, startup_bundle).run()
    finally:
        # gunicorn's workers are forked inside run() and leave it by SystemExit too: only the master cleans up.
        if os.getpid() == master:
            if made_metrics_dir is not None:
                shutil.rmtree(made_metrics_dir, ignore_errors=True)
            failed = _stop_grpc(*grpc) if grpc is not None else None
            if failed is not None:
                raise SystemExit(f"pdp: the ext_authz gRPC server stopped (exit {failed}), so the PDP stopped too")


def _start_grpc(settings, startup_bundle):
    """PDP_GRPC_ENABLED: `pdp serve-grpc` forked beside gunicorn (before it starts),
    so one container serves both APIs. It dies with this process (PR_SET_PDEATHSIG);
    if it fails (a port taken, a worker dead), it stops the whole PDP, so the
    orchestrator restarts both rather than leaving half of it serving."""
    import signal

    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(report_w)
        return pid, report_r
    os.close(report_r)
    code = 1
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        from .grpc_authz.server import serve as serve_grpc

        code = serve_grpc(settings, startup_bundle)
    finally:
        if code != 0:
            os.write(report_w, bytes([code & 0xFF]))
            os.kill(os.getppid(), signal.SIGTERM)
        os._exit(code)


def _stop_grpc(pid: int, report_fd: int):
    """Stops the gRPC server; returns its exit code if it had failed on its own, else None."""
    import signal
    import time

    os.set_blocking(report_fd, False)
    try:
        report = os.read(report_fd, 1)
    except BlockingIOError:
        report = b""
    os.close(report_fd)
    if report:
        return report[0]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return None
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass  # gunicorn's master reaps every child, ours included
    return None
