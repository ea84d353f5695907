"""One request's trace, proxy -> PDP (JWT, engine) -> upstream, in a real OTLP receiver.

The real proxy, the real PDP under gunicorn and a real upstream, all with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at tests/tracing/otlp_receiver.py; and
the same chain with tracing off, where the context is still passed on.
"""

import json

import pytest
import requests

from tests.conftest import start_pdp
from tests.proxy.conftest import policy_pdp_env
from tests.proxy.proxy_helpers import start_echo, start_proxy
from tests.support.waiting import wait_until
from tests.tracing.otlp_receiver import OtlpReceiver

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - {{name: app, match: {{prefix: /}}, cluster: app}}
"""


@pytest.fixture
def chain(redis_server, jwt_secret, tmp_path):
    """chain(otlp_url or None) -> (proxy, pdp, upstream), stopped after the test."""
    started = []
    pdp_env = policy_pdp_env(jwt_secret, redis_server.redis_url, tmp_path)

    def _start(otlp_url):
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url, "OTEL_BSP_SCHEDULE_DELAY": "100"} if otlp_url else {}
        pdp = start_pdp({**pdp_env, **otel}, workers=1)
        started.append(pdp)
        app = start_echo("app")
        started.append(app)
        proxy = start_proxy(
            routes=ROUTES.format(app=app.url),
            env={"PDP_URL": pdp.url, "PDP_TIMEOUT_MS": "3000", "VERDICT_CACHE_SIZE": "0", **otel},
        )
        started.append(proxy)
        return proxy, pdp, app

    yield _start
    for server in reversed(started):
        server.stop()


def json_lines(server, key):
    return [json.loads(line) for line in server.output().splitlines() if line.startswith("{") and key in line]


def test_a_trace_shows_proxy_pdp_and_upstream_spans(chain, mint):
    receiver = OtlpReceiver()
    try:
        proxy, pdp, _ = chain(receiver.url)
        resp = requests.get(
            proxy.url + "/app/x",
            timeout=10,
            headers={
                "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01",
                "tracestate": "vendor=1",
                "authorization": "Bearer " + mint("alice", ["user"]),
            },
        )
        assert resp.status_code == 200, resp.text
        seen = resp.json()["headers"]
        wanted = {
            ("lucid-proxy", "proxy.request"),
            ("lucid-proxy", "proxy.pdp_check"),
            ("lucid-proxy", "proxy.upstream"),
            ("lucid-pdp", "pdp.decide"),
            ("lucid-pdp", "pdp.jwt"),
            ("lucid-pdp", "pdp.engine"),
        }
        spans = receiver.wait_for(lambda got: wanted <= {(s["service"], s["name"]) for s in got})
    finally:
        receiver.stop()
    by_name = {s["name"]: s for s in spans if s["trace_id"] == TRACE}
    assert wanted <= {(s["service"], n) for n, s in by_name.items()}, "every span is in the client's trace"
    # The tree: client -> proxy.request -> {pdp_check -> pdp.decide -> {jwt, engine}, upstream}.
    assert by_name["proxy.request"]["parent_id"] == CLIENT_SPAN
    assert by_name["proxy.pdp_check"]["parent_id"] == by_name["proxy.request"]["span_id"]
    assert by_name["proxy.upstream"]["parent_id"] == by_name["proxy.request"]["span_id"]
    assert by_name["pdp.decide"]["parent_id"] == by_name["proxy.pdp_check"]["span_id"]
    assert by_name["pdp.jwt"]["parent_id"] == by_name["pdp.decide"]["span_id"]
    assert by_name["pdp.engine"]["parent_id"] == by_name["pdp.decide"]["span_id"]
    # The upstream is told the upstream call's span as its parent, tracestate kept.
    assert seen["traceparent"] == f"00-{TRACE}-{by_name['proxy.upstream']['span_id']}-01"
    assert seen["tracestate"] == "vendor=1"
    # The access log and the decision log carry the trace id.
    assert any(line.get("trace_id") == TRACE for line in json_lines(proxy, '"request_id"'))
    decisions = [d for d in json_lines(pdp, '"decision_id"') if d.get("trace_id") == TRACE]
    assert decisions and decisions[0]["span_id"] == by_name["pdp.decide"]["span_id"]


def test_tracing_off_still_passes_the_context_on_and_logs_it(chain, mint):
    proxy, pdp, _ = chain(None)
    token = "Bearer " + mint("alice", ["user"])
    seen = requests.get(
        proxy.url + "/app/x",
        timeout=10,
        headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01", "authorization": token},
    ).json()["headers"]
    assert seen["traceparent"] == f"00-{TRACE}-{CLIENT_SPAN}-01"  # nothing recorded: passed on as is
    # No incoming context: the proxy starts one, and the PDP and the upstream share it.
    seen = requests.get(proxy.url + "/app/y", timeout=10, headers={"authorization": token}).json()["headers"]
    started = seen["traceparent"].split("-")[1]
    assert len(started) == 32 and started != TRACE
    # The access and decision log lines are written after the answer left: wait for them (bounded).
    wait_until(lambda: any(line.get("trace_id") == started for line in json_lines(proxy, '"request_id"')), timeout=5)
    wait_until(lambda: any(d.get("trace_id") == started for d in json_lines(pdp, '"decision_id"')), timeout=5)


def test_a_forged_traceparent_header_never_reaches_the_upstream_twice(chain, mint):
    proxy, _, _ = chain(None)
    resp = requests.get(
        proxy.url + "/app/z",
        timeout=10,
        headers={"traceparent": "not-a-traceparent", "authorization": "Bearer " + mint("alice", ["user"])},
    )
    seen = resp.json()["headers"]
    assert seen["traceparent"].startswith("00-") and "not-a" not in seen["traceparent"]
