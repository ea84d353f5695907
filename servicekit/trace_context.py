"""W3C Trace Context (traceparent / tracestate), read or started, in plain Python.

Shared by the proxy and the PDP. Propagation always works and costs a few
string operations; recording spans is servicekit/tracing.py's job, and only when
OTEL_EXPORTER_OTLP_ENDPOINT is set.
"""

from __future__ import annotations

import os
import re

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_MAX_TRACESTATE = 512  # W3C: at most 32 list members; bounded here by size


class TraceContext:
    __slots__ = ("trace_id", "span_id", "flags", "tracestate")

    def __init__(self, trace_id: str, span_id: str, flags: str = "01", tracestate: str = ""):
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.tracestate = tracestate

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def headers(self) -> list:
        """The propagation headers for the next hop."""
        out = [("traceparent", self.traceparent())]
        if self.tracestate:
            out.append(("tracestate", self.tracestate))
        return out

    def child(self, span_id: str | None = None) -> "TraceContext":
        """The same trace with another parent span (this hop's own)."""
        return TraceContext(self.trace_id, span_id or new_span_id(), self.flags, self.tracestate)


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def parse(traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
    """The incoming context, or None when traceparent is absent or invalid (then a new trace starts)."""
    if not traceparent:
        return None
    m = _TRACEPARENT.match(traceparent.strip().lower())
    if not m:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = (tracestate or "").strip()
    if len(state) > _MAX_TRACESTATE or any(c in state for c in "\r\n\0"):
        state = ""  # W3C: a malformed tracestate is dropped, the traceparent kept
    return TraceContext(trace_id, span_id, flags, state)


def read_or_start(traceparent: str | None, tracestate: str | None = None) -> TraceContext:
    """The caller's context, else a new sampled trace whose root is this hop."""
    return parse(traceparent, tracestate) or TraceContext(new_trace_id(), new_span_id(), "01")
