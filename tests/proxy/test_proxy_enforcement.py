"""End to end: client -> proxy -> real PDP (gunicorn, Redis) -> real upstreams."""

import base64
import json
import os
import re
import socket
import time

import pytest
import requests

from tests.proxy.proxy_helpers import get, raw_request, read_response, start_proxy, wait_until


def bearer(mint, sub="alice", roles=("user",)):
    return {"Authorization": "Bearer " + mint(sub, list(roles))}


def test_allowed_request_reaches_upstream_with_the_pdps_identity(stack, mint):
    response = get(stack.proxy.port, "/app/items?x=1", headers=bearer(mint, "alice", ["user", "ops"]))
    assert response.status == 200
    seen = response.json()
    assert seen["path"] == "/app/items?x=1"
    assert seen["headers"]["x-user-id"] == "alice"
    assert sorted(seen["headers"]["x-user-roles"].split(",")) == ["ops", "user"]
    assert response.header("ratelimit-policy") == "100;w=60"


def test_anonymous_request_gets_the_pdps_401_as_problem_json(stack):
    response = get(stack.proxy.port, "/app/items")
    assert response.status == 401
    assert response.header("content-type") == "application/problem+json"
    assert response.header("www-authenticate") == "Bearer"
    assert response.json()["status"] == 401
    assert response.json()["detail"] == "authentication_required"


def test_deny_status_and_headers_pass_through(stack, mint):
    response = get(stack.proxy.port, "/limited/x", headers=bearer(mint))
    assert response.status == 429
    assert response.header("retry-after") == "7"
    assert response.header("ratelimit") == "limit=0, remaining=0"
    assert response.json()["detail"] == "quota_exceeded"


def test_invalid_token_is_401_not_anonymous(stack, mint):
    forged = mint("alice", ["user"], secret="x" * 40)
    response = get(stack.proxy.port, "/open/x", headers={"Authorization": "Bearer " + forged})
    assert response.status == 401


def test_spoofed_identity_headers_are_replaced_by_the_pdps(stack, mint):
    spoof = {
        "X-User-Id": "admin",
        "X-User-Roles": "admin",
        "X-Lucid-Subject": "mallory",
        "X-User-Mfa": "true",
        **bearer(mint, "alice"),
    }
    seen = get(stack.proxy.port, "/app/x", headers=spoof).json()["headers"]
    assert seen["x-user-id"] == "alice"
    assert seen["x-user-roles"] == "user"
    assert seen["x-lucid-subject"] == "alice"  # a header the PDP sets, not in the fixed list
    assert "x-user-mfa" not in seen


def test_a_custom_header_the_pdp_may_set_is_dropped_when_a_decision_leaves_it_out(stack):
    # Anonymous on an open route: the decision sets no x-lucid-subject, so the
    # client's own must not reach the backend as if the PDP had set it.
    seen = get(stack.proxy.port, "/open/x", headers={"X-Lucid-Subject": "admin", "RateLimit": "r=9"}).json()
    assert "x-lucid-subject" not in seen["headers"] and "ratelimit" not in seen["headers"]


def test_spoofed_identity_never_reaches_the_pdp_either(stack):
    assert get(stack.proxy.port, "/naive/x", headers={"X-User-Roles": "admin"}).status == 401


def test_anonymous_spoofed_identity_never_reaches_upstream(stack):
    seen = get(stack.proxy.port, "/open/x", headers={"X-User-Id": "admin", "X-User-Roles": "admin"}).json()
    assert not [h for h in seen["headers"] if h.startswith("x-user-")]


def test_path_judged_is_path_forwarded(stack, mint):
    # /open/../app/x is /app/x: judged (401 anonymous) as such, not as /open.
    assert get(stack.proxy.port, "/open/../app/x").status == 401
    assert get(stack.proxy.port, "/open/%2e%2e/app/x").status == 401
    response = get(stack.proxy.port, "//app//./x", headers=bearer(mint))
    assert response.json()["path"] == "/app/x"
    assert get(stack.proxy.port, "/open/..%2fapp/x").status == 400


def test_meta_endpoints(stack, mint):
    info = get(stack.proxy.port, "/api/v1/meta/info").json()
    assert info["component"] == "proxy" and "app" in info["clusters"]
    assert "version" in get(stack.proxy.port, "/api/v1/meta/version").json()
    health = get(stack.proxy.port, "/api/v1/meta/health")
    assert health.status == 200, health.body
    assert health.json() == {"status": "ok"}  # nothing about the backends for anonymous callers
    assert get(stack.proxy.port, "/api/v1/meta/health/details").status == 401
    assert get(stack.proxy.port, "/api/v1/meta/health/details", headers=bearer(mint, "bob", ["user"])).status == 403
    details = get(stack.proxy.port, "/api/v1/meta/health/details", headers=bearer(mint, "root", ["admin"]))
    assert details.status == 200, details.body
    assert details.json()["checks"]["pdp"]["status"] == "ok"
    assert details.json()["checks"]["clusters"]["app"]["endpoints"][0]["url"] == stack.upstreams[0].url
    assert get(stack.proxy.port, "/api/v1/meta/metrics", headers=bearer(mint, "bob", ["user"])).status == 403
    metrics = get(stack.proxy.port, "/api/v1/meta/metrics", headers=bearer(mint, "root", ["admin"]))
    assert metrics.status == 200
    text = metrics.body.decode()
    for name in (
        "lucid_proxy_requests_total",
        "lucid_proxy_request_duration_seconds_bucket",
        "lucid_proxy_pdp_duration_seconds_bucket",
        "lucid_proxy_upstream_duration_seconds_bucket",
        "lucid_proxy_active_connections",
        "lucid_proxy_cluster_healthy_endpoints",
        "lucid_proxy_cluster_breaker_state",
    ):
        assert name in text, name
    assert re.search(r'lucid_proxy_requests_total\{route="app",status="401"\} [1-9]', text)


def test_health_is_503_when_the_pdp_is_down(stack):
    proxy = start_proxy(routes=open(stack.proxy.proc.args[-1]).read(), env={})  # PDP_URL: a closed port
    try:
        health = get(proxy.port, "/api/v1/meta/health")
        assert health.status == 503
        assert health.json() == {"status": "degraded"}
        assert get(proxy.port, "/app/x").status == 503  # fail closed
    finally:
        proxy.stop()


def test_a_pdp_that_never_answers_fails_closed_within_the_timeout(stack):
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
    proxy = start_proxy(routes=open(stack.proxy.proc.args[-1]).read(), env={"PDP_URL": url, "PDP_TIMEOUT_MS": "200"})
    try:
        started = time.monotonic()
        response = get(proxy.port, "/app/x")
        assert response.status == 503
        assert time.monotonic() - started < 2.0
    finally:
        proxy.stop()
        blackhole.close()


def test_cacheable_verdicts_are_reused_and_dropped_on_a_new_revision(stack, mint):
    headers = bearer(mint, "carol")
    admin = bearer(mint, "root", ["admin"])

    def cache_hits():
        text = get(stack.proxy.port, "/api/v1/meta/metrics", headers=admin).body.decode()
        match = re.search(r"^lucid_proxy_verdict_cache_hits_total ([0-9.e+]+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    assert get(stack.proxy.port, "/cached/x", headers=headers).status == 200
    before = cache_hits()
    for _ in range(3):
        assert get(stack.proxy.port, "/cached/x", headers=headers).status == 200
    assert cache_hits() - before >= 3
    # Another caller's credential is a different key: no cross-user reuse.
    assert get(stack.proxy.port, "/cached/x").status == 401

    policy = stack.policy_dir / "gateway" / "decision.rego"
    old_revision = requests.get(stack.pdp.url + "/v1/policies", timeout=5).json()["revision"]
    policy.write_text(policy.read_text().replace('{"app", "cached", "ws", "big"}', '{"app", "ws", "big"}'))
    wait_until(
        lambda: requests.get(stack.pdp.url + "/v1/policies", timeout=5).json()["revision"] != old_revision, timeout=10
    )
    try:
        # Any uncached decision brings the new revision, which empties the cache.
        assert get(stack.proxy.port, "/app/x", headers=headers).status == 200
        assert get(stack.proxy.port, "/cached/x", headers=headers).status == 403
    finally:
        policy.write_text(policy.read_text().replace('{"app", "ws", "big"}', '{"app", "cached", "ws", "big"}'))


def test_request_id_reaches_pdp_upstream_and_client(stack, mint):
    response = get(stack.proxy.port, "/app/x", headers={"X-Request-ID": "req-0123456789", **bearer(mint)})
    assert response.header("x-request-id") == "req-0123456789"
    assert response.json()["headers"]["x-request-id"] == "req-0123456789"


def test_access_log_line_has_the_fields_and_no_secrets(stack, mint):
    token = mint("dave")
    get(
        stack.proxy.port,
        "/app/logged?access_token=SECRET1&page=2",
        headers={"Authorization": "Bearer " + token, "Cookie": "session=SECRET2", "X-Request-ID": "log-test-000001"},
    )
    line = wait_until(lambda: [x for x in stack.proxy.output().splitlines() if "log-test-000001" in x], timeout=5)[0]
    record = json.loads(line)
    assert record["status"] == 200 and record["route"] == "app" and record["subject"] == "dave"
    assert record["method"] == "GET" and record["client_ip"] == "127.0.0.1"
    assert record["decision_id"] and record["pdp_ms"] is not None and record["upstream_ms"] is not None
    assert record["path"] == "/app/logged?access_token=REDACTED&page=2"
    output = stack.proxy.output()
    for secret in ("SECRET1", "SECRET2", token):
        assert secret not in output


def test_websocket_upgrade_is_tunnelled_once_allowed(stack, mint):
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (
        "GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    denied = raw_request(stack.proxy.port, (upgrade + "\r\n").encode())
    assert denied.status == 401
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10) as sock:
        sock.sendall((upgrade + f"Authorization: Bearer {mint('erin')}\r\n\r\n").encode())
        sock_file = sock.makefile("rb")
        response = read_response(sock_file)
        assert response.status == 101
        assert response.header("x-seen-user") == "erin"
        sock.sendall(b"\x81\x05hello")
        assert sock_file.read(7) == b"\x81\x05hello"


def test_trusted_proxy_forwarded_for_is_believed_only_from_trusted_peers(stack, mint):
    routes = open(stack.proxy.proc.args[-1]).read()
    trusting = start_proxy(
        routes=routes, env={"PDP_URL": stack.pdp.url, "PDP_TIMEOUT_MS": "3000", "TRUSTED_PROXIES": "127.0.0.0/8"}
    )
    try:
        seen = get(
            trusting.port,
            "/app/x",
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https", **bearer(mint)},
        ).json()["headers"]
        assert seen["x-real-ip"] == "203.0.113.9"
        assert seen["x-forwarded-for"] == "198.51.100.7, 203.0.113.9, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "https"
        seen = get(
            trusting.port,
            "/app/x",
            headers={"X-Forwarded-Host": "gw.example:8443", "X-Forwarded-Proto": "https\xa0", **bearer(mint)},
        ).json()["headers"]
        assert seen["x-forwarded-host"] == "gw.example:8443"
        assert seen["x-forwarded-proto"] == "http"  # only exactly http or https is believed
        # Even a trusted peer's X-Forwarded-Host must be a host[:port]; else the client's Host is kept.
        seen = get(
            trusting.port, "/app/x", headers={"X-Forwarded-Host": "evil.example/../admin", **bearer(mint)}
        ).json()["headers"]
        assert seen["x-forwarded-host"] == f"127.0.0.1:{trusting.port}"
    finally:
        trusting.stop()
    seen = get(stack.proxy.port, "/app/x", headers={"X-Forwarded-For": "203.0.113.9", **bearer(mint)}).json()
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-real-ip"] == "127.0.0.1"


def test_sidecar_mode_guards_one_app_without_a_routes_file(stack, mint):
    sidecar = start_proxy(upstream=stack.upstreams[0].url, env={"PDP_URL": stack.pdp.url, "PDP_TIMEOUT_MS": "3000"})
    try:
        assert get(sidecar.port, "/app/x").status == 401
        seen = get(sidecar.port, "/app/x", headers=bearer(mint, "frank")).json()
        assert seen["service"] == "app1" and seen["headers"]["x-user-id"] == "frank"
        health = get(sidecar.port, "/api/v1/meta/health/details", headers=bearer(mint, "root", ["admin"]))
        assert health.status == 200 and health.json()["checks"]["clusters"]["app"]["status"] == "ok"
    finally:
        sidecar.stop()


def test_a_burst_of_identical_cacheable_requests_costs_one_pdp_decision(stack, mint):
    from concurrent.futures import ThreadPoolExecutor

    def decisions():
        text = requests.get(stack.pdp.url + "/metrics", timeout=5).text
        return sum(float(v) for v in re.findall(r"^lucid_pdp_decisions_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))

    headers = bearer(mint, "burst-user")
    before = decisions()
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda i: get(stack.proxy.port, "/cached/burst", headers=headers).status, range(20)))
    assert statuses == [200] * 20
    assert decisions() - before <= 3  # one per worker at most, plus a straggler

    # Quota-spending (non-cacheable) decisions are never shared: each request asks.
    before = decisions()
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: get(stack.proxy.port, "/app/burst", headers=headers).status, range(10)))
    assert decisions() - before == 10


@pytest.mark.parametrize("batch_max", ["1", None])
def test_waiting_for_a_pdp_connection_is_bounded_apart_from_the_deadline(stack, batch_max):
    """One decision is on the wire and waits out the deadline; the others wait their
    turn for at most the queue timeout. With batches on (the default), decisions that
    arrive together may share the exchange on the wire, so how many wait the deadline
    depends on timing; one at a time, exactly one does."""
    from concurrent.futures import ThreadPoolExecutor

    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    proxy = start_proxy(
        routes=open(stack.proxy.proc.args[-1]).read(),
        env={
            "PDP_URL": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
            "PDP_POOL_SIZE": "1",
            "PDP_TIMEOUT_MS": "1500",
            "PDP_QUEUE_TIMEOUT_MS": "200",
            **({"PDP_BATCH_MAX": batch_max} if batch_max else {}),
        },
    )
    try:
        with ThreadPoolExecutor(3) as pool:
            statuses = list(pool.map(lambda i: get(proxy.port, f"/app/{i}").status, range(3)))
        assert statuses == [503, 503, 503]
        records = wait_until(
            lambda: (
                [
                    json.loads(line)
                    for line in proxy.output().splitlines()
                    if line.startswith("{") and '"status":503' in line
                ][2:]
                and [
                    json.loads(line)
                    for line in proxy.output().splitlines()
                    if line.startswith("{") and '"status":503' in line
                ]
            ),
            timeout=5,
        )
        errors = sorted(record["error"] for record in records)
        deadline, queue = "PDP unreachable: deadline exceeded", "PDP unreachable: no free connection in time"
        if batch_max == "1":
            assert errors == [deadline, queue, queue]
        else:
            assert len(errors) == 3 and deadline in errors and set(errors) <= {deadline, queue}
    finally:
        proxy.stop()
        blackhole.close()
