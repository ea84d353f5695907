"""Spans for the proxy and the PDP, exported with OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

`make_tracer(service_name)` returns a NoTracer when the variable is unset: no
OpenTelemetry import, one small object per span, and the W3C context passed
on unchanged (or started, so logs always carry a trace id). When set, the
OpenTelemetry SDK (the `tracing` extra) records each span with the caller's
context as explicit parent, and its batch processor exports them; the SDK
reads its own OTEL_* settings (endpoint, headers, sampler, batch delay).
Contexts are passed by hand, never through a global "current span": gevent
switches greenlets between any two lines.
"""

from __future__ import annotations

import logging
import os

from .trace_context import TraceContext, new_span_id, new_trace_id

log = logging.getLogger("lucid.tracing")


class _NoSpan:
    __slots__ = ("context",)

    def __init__(self, context: TraceContext):
        self.context = context

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def set(self, key, value) -> None:
        pass


class NoTracer:
    """Tracing off: contexts are propagated, nothing is recorded."""

    enabled = False

    def span(self, name: str, parent: TraceContext | None, kind: str = "internal", attributes=None):
        return _NoSpan(parent or TraceContext(new_trace_id(), new_span_id(), "01"))

    def shutdown(self) -> None:
        pass


class _OtelSpan:
    __slots__ = ("_span", "context")

    def __init__(self, span, parent: TraceContext | None):
        self._span = span
        sc = span.get_span_context()
        self.context = TraceContext(
            format(sc.trace_id, "032x"),
            format(sc.span_id, "016x"),
            format(int(sc.trace_flags), "02x"),
            parent.tracestate if parent else "",
        )

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, exc_type.__name__))
        self._span.end()
        return False

    def set(self, key, value) -> None:
        if value is not None:
            self._span.set_attribute(key, value)


class OtelTracer:
    """Records spans with the OpenTelemetry SDK and exports them over OTLP/HTTP (protobuf)."""

    enabled = True

    def __init__(self, service_name: str, exporter=None):
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._trace = trace
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("lucid-gateway")
        self._kinds = {
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
            "internal": trace.SpanKind.INTERNAL,
        }

    def _parent(self, parent: TraceContext | None):
        from opentelemetry.context import Context

        if parent is None:
            return Context()  # a root span
        t = self._trace
        state = t.TraceState.from_header([parent.tracestate]) if parent.tracestate else None
        sc = t.SpanContext(
            int(parent.trace_id, 16),
            int(parent.span_id, 16),
            is_remote=True,
            trace_flags=t.TraceFlags(int(parent.flags, 16)),
            trace_state=state,
        )
        return t.set_span_in_context(t.NonRecordingSpan(sc))

    def span(self, name: str, parent: TraceContext | None, kind: str = "internal", attributes=None):
        span = self._tracer.start_span(
            name, context=self._parent(parent), kind=self._kinds[kind], attributes=attributes
        )
        return _OtelSpan(span, parent)

    def shutdown(self) -> None:
        self._provider.shutdown()


def make_tracer(service_name: str, environ=os.environ):
    """OtelTracer when OTEL_EXPORTER_OTLP_ENDPOINT (or its traces variant) is set, else NoTracer.

    service_name: the spans' service.name unless OTEL_SERVICE_NAME says otherwise."""
    if not (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return NoTracer()
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return NoTracer()
    try:
        return OtelTracer(environ.get("OTEL_SERVICE_NAME") or service_name)
    except ImportError as err:
        raise RuntimeError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed "
            f"(pip install 'lucid-gateway[tracing]'): {err}"
        ) from None
