"""Start and stop real server processes for tests, always bounded in time.

The process handling itself (own session, group signals, readiness) is
devenv/processes.py, which `make run` (devenv/run.py) uses too.
"""

import os
import sys
import tempfile
from pathlib import Path

from devenv.processes import ROOT, Child

from .ports import wait_for_port

__all__ = ["ROOT", "Server", "python_argv"]


class Server:
    """A child process listening on a loopback port, with its output in a log file."""

    def __init__(self, argv, port, env=None, cwd=None, ready_timeout=30.0):
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="lucid-test-", suffix=".log", delete=False)
        self._child = Child(Path(argv[0]).name, argv, self.log, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
        self.proc = self._child.proc
        try:
            wait_for_port(port, timeout=ready_timeout, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start:\n{self.output()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        # SIGTERM to the child only (gunicorn's master stops its own workers), then the group is killed.
        return self._child.stop(timeout, group=False)


def python_argv(*args) -> list:
    """argv for running a module with the interpreter the tests run on."""
    return [sys.executable, *args]


def children(pid: int) -> list[int]:
    """The direct children of pid (gunicorn's or the proxy's workers), from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out
