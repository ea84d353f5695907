"""The proxy batches concurrent decisions into POST /v1/check/batch (proxy/pdp_batch.py):
real proxy, real PDP under gunicorn, real upstream; nginx stands in front of the
PDP as an older PDP that has no batch endpoint."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.proxy.proxy_helpers import get, start_proxy
from tests.support.nginx import start_nginx
from tests.support.ports import free_port


def bearer(mint, sub="alice", roles=("user",)):
    return {"Authorization": f"Bearer {mint(sub, list(roles))}"}


def counter(port, mint, name):
    text = get(port, "/api/v1/meta/metrics", headers=bearer(mint, "root", ["admin"])).body.decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def burst(port, mint, n, prefix):
    """n concurrent requests, each a different decision key (its own path and user)."""
    tokens = [bearer(mint, f"{prefix}-{i}") for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: get(port, f"/app/{prefix}/{i}", headers=tokens[i]).status, range(n)))


def start_batching_proxy(stack, **env):
    return start_proxy(
        routes=open(stack.proxy.proc.args[-1]).read(),
        env={"PDP_URL": stack.pdp.url, "PDP_TIMEOUT_MS": "3000", **env},
    )


def test_concurrent_decisions_share_batch_exchanges(stack, mint):
    proxy = start_batching_proxy(stack)
    try:
        before = counter(proxy.port, mint, "lucid_proxy_pdp_batched_decisions_total")
        batches_before = counter(proxy.port, mint, "lucid_proxy_pdp_batches_total")
        assert burst(proxy.port, mint, 40, "batch") == [200] * 40
        decided = counter(proxy.port, mint, "lucid_proxy_pdp_batched_decisions_total") - before
        batches = counter(proxy.port, mint, "lucid_proxy_pdp_batches_total") - batches_before
        # Every decision went through a batch (the metrics reads are batches of one each).
        assert decided >= 40
        # One batch in flight at a time (the default): those arriving meanwhile share the next ones.
        assert batches < decided, (batches, decided)
    finally:
        proxy.stop()


def test_batch_max_1_asks_one_decision_per_exchange(stack, mint):
    proxy = start_batching_proxy(stack, PDP_BATCH_MAX="1")
    try:
        assert burst(proxy.port, mint, 10, "single") == [200] * 10
        assert counter(proxy.port, mint, "lucid_proxy_pdp_batches_total") == 0
        assert counter(proxy.port, mint, "lucid_proxy_pdp_batched_decisions_total") == 0
    finally:
        proxy.stop()


def test_batched_denials_and_identity_are_each_requests_own(stack, mint):
    proxy = start_batching_proxy(stack)
    try:
        users = [f"who-{i}" for i in range(12)]
        headers = [bearer(mint, u) for u in users]
        with ThreadPoolExecutor(24) as pool:
            seen = list(pool.map(lambda i: get(proxy.port, f"/app/who/{i}", headers=headers[i]).json(), range(12)))
            anonymous = list(pool.map(lambda i: get(proxy.port, f"/app/anon/{i}").status, range(12)))
        assert [s["headers"]["x-user-id"] for s in seen] == users
        assert anonymous == [401] * 12
    finally:
        proxy.stop()


_OLD_PDP = """  upstream pdp {{ server 127.0.0.1:{pdp_port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location = /v1/check/batch {{ return 404; }}
    location / {{ proxy_pass http://pdp; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}"""


@pytest.fixture
def older_pdp(stack):
    """The real PDP behind an nginx that answers 404 to /v1/check/batch, as a PDP from before it."""
    port = free_port()
    server = start_nginx(_OLD_PDP.format(pdp_port=stack.pdp.port, port=port), port, "lucid-old-pdp-")
    yield server
    server.stop()


def test_a_pdp_without_the_batch_endpoint_is_asked_one_decision_at_a_time(stack, older_pdp, mint):
    proxy = start_batching_proxy(stack, PDP_URL=older_pdp.url)
    try:
        assert burst(proxy.port, mint, 20, "old") == [200] * 20
        assert burst(proxy.port, mint, 5, "old-again") == [200] * 5
        assert "has no /v1/check/batch (answered 404)" in proxy.output()
        assert proxy.output().count("has no /v1/check/batch") == 1  # learned once per worker
    finally:
        proxy.stop()
