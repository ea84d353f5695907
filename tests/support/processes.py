"""Start and stop real server processes for tests, always bounded in time."""
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .ports import wait_for_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """A child process listening on a loopback port, with its output in a log file."""

    def __init__(self, argv, port, env=None, cwd=None, ready_timeout=30.0):
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="lucid-test-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env,
            cwd=cwd or ROOT, start_new_session=True,
        )
        try:
            wait_for_port(port, timeout=ready_timeout, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"{argv[0]} did not start:\n{self.output()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, sig) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def python_argv(*args) -> list:
    """argv for running a module with the interpreter the tests run on."""
    return [sys.executable, *args]
