"""One batch in flight per proxy worker (the default), and the escape when it
stalls (proxy/pdp_batch.py): a PDP worker stopped with SIGSTOP holds the
proxy's pooled connection; decisions queued behind that batch go out on a
new connection, which the PDP's other worker accepts, after
PDP_BATCH_STALL_MS instead of after the PDP deadline. Real proxy, real PDP
(gunicorn, two workers), real Redis."""

import os
import re
import signal
import threading
import time

import pytest

from tests.proxy.conftest import policy_pdp_env
from tests.proxy.proxy_helpers import get, start_proxy
from tests.support.pdp_process import start_pdp
from tests.support.processes import children
from tests.support.sockets import established

DEADLINE_MS = 2500


@pytest.fixture
def two_worker_pdp(redis_server, jwt_secret, tmp_path):
    pdp = start_pdp(policy_pdp_env(jwt_secret, redis_server.redis_url, tmp_path), workers=2)
    yield pdp
    for pid in children(pdp.proc.pid):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    pdp.stop()


def pdp_workers_with_connections(pdp) -> set[int]:
    """PIDs of the PDP's processes holding an established connection on its port."""
    return set().union(*established(f"( sport = :{pdp.port} )"))


def timed_get(port, path, headers, results, key):
    started = time.monotonic()
    status = get(port, path, headers=headers, timeout=10).status
    results[key] = (status, time.monotonic() - started)


def stalls_counted(port, mint) -> float:
    admin = {"Authorization": f"Bearer {mint('root', ['admin'])}"}
    text = get(port, "/api/v1/meta/metrics", headers=admin).body.decode()
    match = re.search(r"^lucid_proxy_pdp_batch_stalls_total ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def run_stalled(pdp, mint, stack, stall_ms: int):
    """Stops the PDP worker that holds the proxy's connection, then asks two decisions;
    returns {name: (status, seconds)} and "stalls": lucid_proxy_pdp_batch_stalls_total."""
    proxy = start_proxy(
        routes=open(stack.proxy.proc.args[-1]).read(),
        env={"PDP_URL": pdp.url, "PDP_TIMEOUT_MS": str(DEADLINE_MS), "PDP_BATCH_STALL_MS": str(stall_ms)},
    )
    try:
        assert get(proxy.port, "/app/warm/0", headers={"Authorization": f"Bearer {mint('warm')}"}).status == 200
        holders = pdp_workers_with_connections(pdp) & set(children(pdp.proc.pid))
        workers = set(children(pdp.proc.pid))
        assert holders and holders != workers, (holders, workers)  # one worker holds the pooled connection
        for pid in holders:
            os.kill(pid, signal.SIGSTOP)
        results = {}
        first = threading.Thread(
            target=timed_get,
            args=(proxy.port, "/app/stuck/1", {"Authorization": f"Bearer {mint('stuck')}"}, results, "stuck"),
        )
        first.start()
        time.sleep(0.1)  # its batch is out on the stopped worker's connection
        timed_get(proxy.port, "/app/next/2", {"Authorization": f"Bearer {mint('next')}"}, results, "next")
        first.join(timeout=15)
        for pid in holders:
            os.kill(pid, signal.SIGCONT)
        results["stalls"] = stalls_counted(proxy.port, mint)
        return results
    finally:
        for pid in children(pdp.proc.pid):
            os.kill(pid, signal.SIGCONT)
        proxy.stop()


def test_a_decision_behind_a_stalled_batch_goes_out_on_another_connection(two_worker_pdp, mint, stack):
    results = run_stalled(two_worker_pdp, mint, stack, stall_ms=200)
    status, took = results["next"]
    assert status == 200
    assert took < DEADLINE_MS / 1000 / 2, results  # about the stall bound, not the deadline
    # The stuck one fails closed at the deadline (503), never hangs.
    assert results["stuck"][0] == 503, results
    assert results["stalls"] >= 1, results


def test_without_the_escape_it_waits_out_the_deadline(two_worker_pdp, mint, stack):
    # The control: a stall bound beyond the deadline leaves the second decision
    # queued behind the stopped worker's batch until the deadline ends it.
    results = run_stalled(two_worker_pdp, mint, stack, stall_ms=60000)
    assert results["next"][1] >= DEADLINE_MS / 1000 * 0.8, results
    assert results["stalls"] == 0, results
