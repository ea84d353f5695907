"""Under real overload the proxy sheds early: a request that would wait longer
than the queue budget for its turn is answered 503 with Retry-After at once,
instead of queueing and failing after a deadline. Real PDP, upstream, proxy;
a few requests, bounded in time."""

import threading
import time

from bench.prom import counts_by
from tests.proxy.proxy_helpers import get, start_echo, start_proxy
from tests.support.pdp_process import start_pdp
from tests.support.processes import ROOT


def test_a_request_arriving_at_an_overlong_queue_is_shed_at_once(redis_server, jwt_secret, mint):
    pdp = start_pdp(
        {
            "JWT_SECRET_KEY": jwt_secret,
            "REDIS_URL": redis_server.redis_url,
            "POLICY_DIR": str(ROOT / "policies"),
            "DECISION_LOG": "off",
            "RATE_LIMIT_ENABLED": "false",
        },
        workers=1,
    )
    upstream = start_echo("slow")
    # One request at a time, a 50 ms budget: a slow upstream makes the queue overlong.
    proxy = start_proxy(
        upstream=upstream.url,
        workers=1,
        env={"PDP_URL": pdp.url, "MAX_ACTIVE_DECISIONS": "1", "QUEUE_BUDGET_MS": "50", "ACCESS_LOG": "false"},
    )
    try:
        auth = {"Authorization": f"Bearer {mint()}"}
        assert get(proxy.port, "/api/v1/sessions", auth).status == 200
        statuses = []

        def call(target):
            statuses.append(get(proxy.port, target, auth, timeout=20).status)

        # One slow request holds the only turn; five more wait theirs out (1 s at most).
        waiting = [threading.Thread(target=call, args=("/api/v1/sessions?delay_s=2.5",))]
        waiting[0].start()
        time.sleep(0.3)
        waiting += [threading.Thread(target=call, args=("/api/v1/sessions",)) for _ in range(5)]
        for t in waiting[1:]:
            t.start()
        time.sleep(1.5)
        started = time.monotonic()
        shed = get(proxy.port, "/api/v1/sessions", auth)
        took = time.monotonic() - started
        for t in waiting:
            t.join(20)
        assert shed.status == 503
        assert shed.header("retry-after") == "1"
        assert shed.header("content-type") == "application/problem+json"
        assert took < 0.25  # answered on arrival, not after a wait
        # The slow one was served; those queued behind it were refused once
        # they had waited their bound: nothing waits unbounded.
        assert sorted(statuses) == [200] + [503] * 5
        # Counted as the admission queue's shed, apart from the PDP client's ("shed").
        admin = {"Authorization": f"Bearer {mint('ops', ['admin'])}"}
        page = get(proxy.port, "/api/v1/meta/metrics", admin).body.decode()
        assert counts_by(page, "lucid_proxy_pdp_errors", "kind") == {"admission": 6.0}, page
    finally:
        for server in (proxy, upstream, pdp):
            server.stop()
