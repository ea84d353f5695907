"""A real redis-server on a free loopback port, in a temporary directory."""

import shutil
import tempfile

from .ports import free_port
from .processes import Server
from .tools import require_tool


def redis_binary() -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not shutil.os.path.exists(binary):
        binary = require_tool("redis-server")
    return binary


def redis_argv(port: int, workdir: str, extra_args=()) -> list:
    """redis-server on loopback, no persistence unless extra_args turn it on."""
    return [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        *extra_args,
    ]


def start_redis(extra_args=(), port=None, workdir=None) -> Server:
    """port/workdir: given again to restart a killed Redis in its place (with its data
    when extra_args turn persistence on)."""
    port = port or free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="lucid-redis-")
    server = Server(redis_argv(port, workdir, extra_args), port)
    server.redis_url = f"redis://127.0.0.1:{port}/0"
    server.workdir = workdir
    return server
