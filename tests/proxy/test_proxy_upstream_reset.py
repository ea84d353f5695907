"""An upstream that answers a response head and then resets the connection:
502 problem+json, a POST is never sent again elsewhere, and the instance is
ejected like one that refuses connections (before, the 200 head counted as a
success and it kept half the traffic). Real proxy, real sockets, real RSTs."""

import sys

import pytest

from tests.proxy.proxy_helpers import get, start_echo, start_proxy
from tests.support.ports import free_port
from tests.support.processes import Server

ROUTES = """
clusters:
  app:
    endpoints: ["{reset}", "{echo}"]
    lb: round_robin
    retry: {{attempts: 1}}
    ejection: {{consecutive_errors: 3, base_ejection_s: 30}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""


@pytest.fixture
def pair(tmp_path):
    log = tmp_path / "reset.log"
    port = free_port()
    reset = Server([sys.executable, "-m", "tests.support.resetting_upstream", str(port), str(log)], port)
    echo = start_echo("app")
    proxy = start_proxy(routes=ROUTES.format(reset=reset.url, echo=echo.url))
    yield proxy, log
    for server in (proxy, echo, reset):
        server.stop()


def test_reset_after_the_head_is_a_502_and_the_instance_is_ejected(pair):
    proxy, log = pair
    statuses = []
    for i in range(30):
        r = get(proxy.port, f"/get/{i}")
        statuses.append(r.status)
        if r.status == 502:
            assert r.header("content-type") == "application/problem+json"
    assert set(statuses) <= {200, 502}
    # 3 consecutive failures eject it: at most 3 502s, then every request goes to the echo.
    assert 1 <= statuses.count(502) <= 3, statuses
    assert statuses[-10:] == [200] * 10
    assert "ejected" in proxy.output()


def test_a_post_is_answered_502_and_not_sent_again(pair):
    proxy, log = pair
    seen = []
    for _ in range(2):  # round robin: one of the two reaches the resetter
        r = get(proxy.port, "/tx", method="POST", body=b'{"amount": 1}', headers={"content-type": "application/json"})
        # The proxy's request id (its answer's x-request-id) is the one the upstream got.
        seen.append((r.header("x-request-id"), r.status, r.header("content-type")))
    reached = [line.split()[2] for line in log.read_text().splitlines() if line.startswith("POST")]
    assert len(reached) == 1, reached
    for rid, status, ctype in seen:
        if rid in reached:
            assert status == 502 and ctype == "application/problem+json"  # not retried on the echo
        else:
            assert status == 200


STICKY = """
clusters:
  app:
    endpoints: ["{reset}", "{echo}"]
    lb: consistent_hash
    hash_on: {{header: x-user}}
    retry: {{attempts: 1}}
    ejection: {{consecutive_errors: 3, base_ejection_s: 30}}
    breaker: {{failure_threshold: 3, open_s: 30}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app, fail_mode: open}}
"""


def test_one_failing_instance_is_ejected_without_opening_the_clusters_breaker(tmp_path):
    # Keys that hash to the resetting instance fail in a row (as many as both thresholds):
    # the instance is ejected, and the cluster, whose other instance serves, stays up.
    log = tmp_path / "reset.log"
    port = free_port()
    reset = Server([sys.executable, "-m", "tests.support.resetting_upstream", str(port), str(log)], port)
    echo = start_echo("app")
    proxy = start_proxy(routes=STICKY.format(reset=reset.url, echo=echo.url))
    try:
        # A user whose requests land on the resetting instance.
        user = next(
            f"u{n}" for n in range(200) if get(proxy.port, f"/find/{n}", headers={"x-user": f"u{n}"}).status == 502
        )
        statuses = [get(proxy.port, f"/s/{i}", headers={"x-user": user}).status for i in range(12)]
        assert set(statuses[:3]) <= {200, 502} and 502 in statuses[:3], statuses
        # Ejected after 3 in a row; then served by the other instance, never 503 circuit-open.
        assert statuses[-8:] == [200] * 8, statuses
        assert "circuit for app opens" not in proxy.output()
    finally:
        for server in (proxy, echo, reset):
            server.stop()
