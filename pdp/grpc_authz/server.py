"""`pdp serve-grpc`: the ext_authz gRPC server in processes of its own.

Each process builds the same services as a gunicorn worker (pdp/app.py
build_services) and serves Check from a thread pool; the processes share
the port through SO_REUSEPORT. They are forked before grpc is imported:
gRPC's core does not survive a fork.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

log = logging.getLogger("lucid.pdp.grpc")


def serve(settings, startup_bundle=None) -> int:  # noqa: C901
    """Runs PDP_GRPC_WORKERS processes until SIGTERM/SIGINT; returns an exit code."""
    workers = settings.grpc_workers
    if workers == 1:
        return _serve_one(settings, startup_bundle)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _serve_one(settings, startup_bundle)
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM):
            code = 1
        forward(signal.SIGTERM, None)  # one worker down: stop the others (the orchestrator restarts us)
    return code


def _serve_one(settings, startup_bundle) -> int:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from servicekit import logs

    from ..app import build_services
    from .service import add_to_server

    logs.configure(settings.log_level)
    services = build_services(settings, startup_bundle)
    services.policies.watch(settings.policy_reload_s)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.grpc_threads, thread_name_prefix="ext-authz"),
        options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", settings.max_body_bytes * 4)],
        maximum_concurrent_rpcs=settings.grpc_threads * 64,
    )
    add_to_server(server, services.decider)
    address = f"{settings.bind_host}:{settings.grpc_port}"
    if ":" in settings.bind_host:
        address = f"[{settings.bind_host}]:{settings.grpc_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        print(f"pdp serve-grpc: PDP_GRPC_PORT: cannot listen on {address}", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def stop(_signum, _frame):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    log.warning("ext_authz gRPC server listening on %s (pid %d)", address, os.getpid())
    while not stopping.wait(1.0):
        pass
    server.stop(grace=5).wait(6)
    return 0
