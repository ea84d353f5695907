"""Free loopback ports and readiness waits."""

import socket

from devenv.processes import wait_for_port

__all__ = ["free_port", "free_ports", "wait_for_port"]


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(names) -> dict[str, int]:
    """A distinct free port for each name. free_port() called once per name can
    hand out one port twice (each socket is closed before the next is bound);
    these are all bound at once, so the kernel gives each its own."""
    sockets = []
    try:
        for _ in names:
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return {name: s.getsockname()[1] for name, s in zip(names, sockets, strict=True)}
    finally:
        for s in sockets:
            s.close()
