"""A real MongoDB-compatible server (SecantusDB) on a free loopback port, in a temporary directory.

No mongod can be installed on these machines; SecantusDB lives in its own venv
in the tools cache (scripts/tools.sh), never in the project's environment.
"""

import tempfile

from .ports import free_port
from .processes import Server
from .tools import require_tool


def start_mongo(port: int | None = None, workdir: str | None = None) -> Server:
    """port and workdir given: restart a stopped server on its data."""
    binary = require_tool("secantusd-py")
    port = port or free_port()
    workdir = workdir or tempfile.mkdtemp(prefix="lucid-mongo-")
    argv = [
        binary,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        workdir,
        "--standalone",
        "--cache-size",
        "64M",
        "--log-level",
        "WARNING",
    ]
    server = Server(argv, port, ready_timeout=60.0)
    server.mongodb_uri = f"mongodb://127.0.0.1:{port}/lucid_gateway"
    server.workdir = workdir
    return server
