"""W3C traceparent parsing and the tracer switch (servicekit/trace_context.py, servicekit/tracing.py)."""

import subprocess
import sys

from servicekit.trace_context import parse, read_or_start
from servicekit.tracing import NoTracer, make_tracer
from tests.support.processes import ROOT

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_valid_traceparent_is_read_with_its_tracestate():
    ctx = parse(f"00-{TRACE}-{SPAN}-01", "congo=t61rcWkgMzE")
    assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.tracestate) == (TRACE, SPAN, True, "congo=t61rcWkgMzE")
    assert ctx.traceparent() == f"00-{TRACE}-{SPAN}-01"
    assert parse(f"00-{TRACE.upper()}-{SPAN}-00").sampled is False


def test_invalid_traceparents_start_a_new_trace():
    for bad in (
        "",
        "junk",
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE}-{SPAN}-01-extra",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
    ):
        assert parse(bad) is None, bad
        started = read_or_start(bad)
        assert len(started.trace_id) == 32 and started.trace_id != TRACE and started.sampled


def test_a_future_version_may_carry_more_fields():
    assert parse(f"01-{TRACE}-{SPAN}-01-more").trace_id == TRACE


def test_a_malformed_tracestate_is_dropped_the_traceparent_kept():
    assert parse(f"00-{TRACE}-{SPAN}-01", "a=b\r\nx: y").tracestate == ""
    assert parse(f"00-{TRACE}-{SPAN}-01", "k=" + "v" * 600).tracestate == ""


def test_child_keeps_the_trace_and_changes_the_parent():
    ctx = parse(f"00-{TRACE}-{SPAN}-01", "a=1")
    child = ctx.child()
    assert child.trace_id == TRACE and child.span_id != SPAN and child.tracestate == "a=1"
    assert child.headers() == [("traceparent", child.traceparent()), ("tracestate", "a=1")]


def test_tracing_off_without_an_endpoint():
    assert isinstance(make_tracer("x", {}), NoTracer)
    assert isinstance(
        make_tracer("x", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}), NoTracer
    )
    span = NoTracer().span("s", parse(f"00-{TRACE}-{SPAN}-01"))
    assert span.context.span_id == SPAN  # passed on unchanged: nothing recorded, nothing to parent


def test_tracing_off_imports_no_opentelemetry():
    """Free when unset: building both services' tracers loads no SDK module."""
    code = (
        "import sys, pdp.app, proxy.cli, proxy.gateway; from servicekit.tracing import make_tracer; "
        "make_tracer('x', {}); print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    ).stdout
    assert out.strip() == "[]"
