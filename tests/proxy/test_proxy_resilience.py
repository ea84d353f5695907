"""Load balancing, health checks, ejection, the breaker, retries and upstream timeouts.

Real echo upstreams behind the real proxy; routes fail open with the PDP down,
so only the proxy's resilience logic decides what happens.
"""

import json
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.proxy.proxy_helpers import ECHO, closed_port_url, get, start_echo, start_proxy, wait_until
from tests.support.processes import Server, python_argv

ROUTES = """
clusters:
  rr: {{endpoints: ["{e1}", "{e2}", "{e3}"]}}
  lo: {{endpoints: ["{e1}", "{e2}"], lb: least_outstanding}}
  ch: {{endpoints: ["{e1}", "{e2}", "{e3}"], lb: consistent_hash, hash_on: {{header: x-session-id}}}}
  chc: {{endpoints: ["{e1}", "{e2}", "{e3}"], lb: consistent_hash, hash_on: {{cookie: sid}}}}
  hc:
    endpoints: ["{e4}", "{e5}"]
    health_check: {{path: /health, interval_s: 0.2, timeout_ms: 500, unhealthy_threshold: 1, healthy_threshold: 1}}
  br:
    endpoints: ["{e6}"]
    breaker: {{failure_threshold: 3, open_s: 1}}
    ejection: {{consecutive_errors: 100}}
  retry_ok:
    endpoints: ["{dead}", "{e1}"]
    retry: {{attempts: 1}}
    ejection: {{consecutive_errors: 1000}}
  retry_none:
    endpoints: ["{dead}", "{e1}"]
    retry: {{attempts: 1, budget_percent: 0, min_concurrency: 0}}
    ejection: {{consecutive_errors: 1000}}
  eject:
    endpoints: ["{e7}", "{e8}"]
    # Long enough that restarting e7 on a loaded machine ends before the ejection does.
    ejection: {{consecutive_errors: 2, base_ejection_s: 4}}
    retry: {{attempts: 1}}
  slow: {{endpoints: ["{e1}"], timeouts: {{read_ms: 300}}}}
  bp:
    endpoints: ["{e1}"]
    breaker: {{max_concurrent: 1, max_pending: 0}}
  eject5xx:
    endpoints: ["{e2}", "{e3}"]
    ejection: {{consecutive_errors: 2, base_ejection_s: 1}}
    breaker: {{failure_threshold: 100}}
  eject5xx_strict:
    endpoints: ["{e2}", "{e3}"]
    ejection: {{consecutive_errors: 2, base_ejection_s: 1, panic_when_all_ejected: false}}
    breaker: {{failure_threshold: 100}}
  down: {{endpoints: ["{dead}"]}}
routes:
"""
CLUSTERS = [
    "rr",
    "lo",
    "chc",
    "ch",
    "hc",
    "br",
    "retry_ok",
    "retry_none",
    "eject",
    "slow",
    "down",
    "bp",
    "eject5xx_strict",
    "eject5xx",
]


@pytest.fixture(scope="module")
def stack():
    echoes = {f"e{i}": start_echo(f"e{i}") for i in range(1, 9)}
    urls = {name: server.url for name, server in echoes.items()}
    routes = ROUTES.format(dead=closed_port_url(), **urls)
    for name in CLUSTERS:
        routes += f"  - {{name: {name}, match: {{prefix: /{name}}}, cluster: {name}, fail_mode: open}}\n"
    proxy = start_proxy(routes=routes)
    yield proxy, echoes
    proxy.stop()
    for server in echoes.values():
        server.stop()


def served_by(port, target, n, headers=None):
    return Counter(get(port, target, headers=headers).json()["service"] for _ in range(n))


def upstream_requests(server):
    with urllib.request.urlopen(server.url + "/__control", timeout=5) as response:
        return json.load(response)["requests"]


def test_round_robin_spreads_evenly(stack):
    proxy, _ = stack
    assert served_by(proxy.port, "/rr/x", 30) == {"e1": 10, "e2": 10, "e3": 10}


def test_least_outstanding_avoids_the_busy_endpoint(stack):
    proxy, echoes = stack
    before = {name: upstream_requests(echoes[name]) for name in ("e1", "e2")}
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, proxy.port, "/lo/slow?delay_s=1.5")
        busy = wait_until(lambda: [n for n in before if upstream_requests(echoes[n]) > before[n]], timeout=5)
        quick = served_by(proxy.port, "/lo/quick", 6)
        assert slow.result().status == 200
    idle = ({"e1", "e2"} - set(busy)).pop()
    assert quick == {idle: 6}


def test_consistent_hash_keeps_a_key_on_one_endpoint(stack):
    proxy, _ = stack
    homes = {}
    for key in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
        seen = served_by(proxy.port, "/ch/x", 4, headers={"X-Session-Id": key})
        assert len(seen) == 1, f"{key} moved between endpoints: {seen}"
        homes[key] = next(iter(seen))
    assert len(set(homes.values())) >= 2, homes


def test_consistent_hash_on_a_cookie(stack):
    proxy, _ = stack
    homes = {}
    for key in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"):
        seen = served_by(proxy.port, "/chc/x", 3, headers={"Cookie": f"theme=dark; sid={key}; lang=en"})
        assert len(seen) == 1, f"{key} moved between endpoints: {seen}"
        homes[key] = next(iter(seen))
    assert len(set(homes.values())) >= 2, homes


def test_active_health_check_takes_an_endpoint_out_and_back(stack):
    proxy, echoes = stack
    assert set(served_by(proxy.port, "/hc/x", 6)) == {"e4", "e5"}
    urllib.request.urlopen(echoes["e4"].url + "/__control?health=503", timeout=5).close()
    try:
        wait_until(lambda: set(served_by(proxy.port, "/hc/x", 4)) == {"e5"}, timeout=5)
        assert set(served_by(proxy.port, "/hc/x", 10)) == {"e5"}
    finally:
        urllib.request.urlopen(echoes["e4"].url + "/__control?health=200", timeout=5).close()
    wait_until(lambda: set(served_by(proxy.port, "/hc/x", 4)) == {"e4", "e5"}, timeout=5)


def test_breaker_opens_after_failures_then_recovers(stack):
    proxy, echoes = stack
    for _ in range(3):
        assert get(proxy.port, "/br/x?status=500").status == 500
    before = upstream_requests(echoes["e6"])
    refused = get(proxy.port, "/br/x")
    assert refused.status == 503
    assert refused.json()["type"].endswith("/circuit-open")
    assert upstream_requests(echoes["e6"]) == before, "an open breaker must not reach the upstream"
    time.sleep(1.1)
    assert get(proxy.port, "/br/x").status == 200  # the half-open probe succeeds
    assert get(proxy.port, "/br/x").status == 200  # and the breaker is closed again


def test_idempotent_requests_retry_after_a_connect_failure(stack):
    proxy, _ = stack
    statuses = Counter(get(proxy.port, "/retry_ok/x").status for _ in range(6))
    assert statuses == {200: 6}


def test_non_idempotent_requests_are_never_retried(stack):
    proxy, _ = stack
    statuses = Counter(get(proxy.port, "/retry_ok/x", method="POST", body=b"{}").status for _ in range(6))
    assert statuses == {200: 3, 502: 3}


def test_retries_stay_within_the_budget(stack):
    proxy, _ = stack
    statuses = Counter(get(proxy.port, "/retry_none/x").status for _ in range(6))
    assert statuses == {200: 3, 502: 3}
    failed = [r for r in (get(proxy.port, "/retry_none/x") for _ in range(2)) if r.status == 502]
    assert failed[0].json()["type"].endswith("/upstream-connect")


def test_ejection_after_connect_errors_and_recovery(stack):
    proxy, echoes = stack
    e7 = echoes["e7"]
    port = e7.port
    assert set(served_by(proxy.port, "/eject/x", 4)) == {"e7", "e8"}
    e7.stop()
    # GETs still succeed (retried on e8); two connect errors eject e7.
    assert served_by(proxy.port, "/eject/x", 6) == {"e8": 6}
    restarted = Server(python_argv(ECHO, str(port), "e7"), port)
    echoes["e7"] = restarted
    assert served_by(proxy.port, "/eject/x", 4) == {"e8": 4}, "still ejected right after"
    wait_until(lambda: "e7" in served_by(proxy.port, "/eject/x", 4), timeout=10)


def test_slow_upstream_answers_504(stack):
    proxy, _ = stack
    started = time.monotonic()
    response = get(proxy.port, "/slow/x?delay_s=3")
    assert response.status == 504
    assert response.header("content-type") == "application/problem+json"
    assert time.monotonic() - started < 2.5


def test_unreachable_upstream_answers_502(stack):
    proxy, _ = stack
    response = get(proxy.port, "/down/x")
    assert response.status == 502
    assert response.json()["type"].endswith("/upstream-connect")


def test_breaker_limits_concurrent_and_pending_requests(stack):
    proxy, _ = stack
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, proxy.port, "/bp/slow?delay_s=1")
        time.sleep(0.3)
        overflow = get(proxy.port, "/bp/x")
        assert slow.result().status == 200
    assert overflow.status == 503
    assert "too many pending requests" in overflow.json()["detail"]
    assert get(proxy.port, "/bp/x").status == 200


def test_consecutive_5xx_eject_endpoints_until_they_recover(stack):
    proxy, _ = stack
    statuses = [get(proxy.port, "/eject5xx_strict/x?status=500").status for _ in range(4)]
    assert statuses == [500, 500, 500, 500]
    ejected = get(proxy.port, "/eject5xx_strict/x")
    assert ejected.status == 503
    assert ejected.json()["type"].endswith("/no-upstream")
    time.sleep(1.1)
    assert get(proxy.port, "/eject5xx_strict/x").status == 200


def test_with_every_endpoint_ejected_requests_still_go_to_them(stack):
    # panic_when_all_ejected (the default): ejection steers traffic between
    # endpoints; it does not turn a whole cluster away.
    proxy, _ = stack
    statuses = [get(proxy.port, "/eject5xx/x?status=500").status for _ in range(4)]
    assert statuses == [500, 500, 500, 500]
    served = [get(proxy.port, "/eject5xx/x") for _ in range(4)]
    assert [r.status for r in served] == [200] * 4
    assert {r.json()["service"] for r in served} == {"e2", "e3"}
    assert "every endpoint is ejected; sending to them anyway (panic)" in proxy.output()
