"""Child processes in their own sessions, for `make run` (devenv/run.py) and the tests.

A Child leads its own session and process group, so signalling the group also
reaches what it forked (gunicorn's and the proxy's workers), and an empty
group means all of it is gone. Nothing here waits without a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the process that started it dies (Linux).

    A supervisor killed with SIGKILL cannot stop its children; the kernel
    then asks each of them to stop instead, so none is left behind.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Child:
    """One process in its own session, stdin closed, stdout and stderr into `log`."""

    def __init__(
        self,
        name: str,
        argv: list,
        log,
        env: dict | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = False,
    ):
        self.name = name
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd or ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def group_alive(self) -> bool:
        """True while any process of the child's group is left (the child reaped first)."""
        self.proc.poll()
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0, group: bool = True) -> int:
        """SIGTERM (to the whole group, or to the child only), then SIGKILL to the group after timeout."""
        if self.proc.poll() is None:
            if group:
                self.signal_group(signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def stop_all(children: list, grace: float, say=lambda line: None) -> list:
    """Stops every child, newest first, and waits until each group is empty.

    Groups still alive after `grace` seconds are killed. Returns the names
    that had to be killed.
    """
    for child in reversed(children):
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = []
    while True:
        alive = [c for c in children if c.group_alive()]
        if not alive:
            break
        if time.monotonic() >= deadline:
            say(f"still running after {grace:g}s, killing process groups " + " ".join(str(c.pid) for c in alive))
            for child in alive:
                child.signal_group(signal.SIGKILL)
                killed.append(child.name)
            end = time.monotonic() + 5
            while any(c.group_alive() for c in alive) and time.monotonic() < end:
                time.sleep(0.05)
            break
        time.sleep(0.05)
    for child in children:
        try:
            child.proc.wait(1)
        except subprocess.TimeoutExpired:
            pass
    return killed


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when host:port accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def first_line(host: str, port: int, send: bytes = b"", timeout: float = 2.0) -> bytes:
    """The first line a server sends (after `send`, if given); b"" when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if send:
                sock.sendall(send)
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.split(b"\n", 1)[0]
    except OSError:
        return b""


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET of url answers 2xx (never through an HTTP proxy from the environment)."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc=None) -> None:
    """Blocks until host:port accepts a connection; fails fast if proc exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        if port_answers(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")
