"""Free loopback ports and readiness waits."""

import socket

from devenv.processes import wait_for_port

__all__ = ["free_port", "wait_for_port"]


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
