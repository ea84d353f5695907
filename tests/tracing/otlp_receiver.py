"""A real OTLP/HTTP trace receiver for the tests: decodes the protobuf the SDK's exporter posts.

Neither the OpenTelemetry Collector nor Jaeger v2 is built here (each is a far
larger Go build than promtool, which alone takes most of the time budget on
this machine), so the test's own HTTP server speaks the receiving side of
OTLP/HTTP: POST /v1/traces, application/x-protobuf ExportTraceServiceRequest,
answered with an empty ExportTraceServiceResponse.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class Span(dict):
    """One received span: name, service, trace_id, span_id, parent_id (hex), kind, attributes."""


class OtlpReceiver:
    def __init__(self):
        self.spans = []
        self.posts = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver._accept(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _accept(self, request):
        found = []
        for rs in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    found.append(
                        Span(
                            name=s.name,
                            service=attrs.get("service.name"),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            attributes={a.key: a.value for a in s.attributes},
                        )
                    )
        with self._lock:
            self.posts += 1
            self.spans.extend(found)

    def wait_for(self, predicate, timeout=20.0):
        """Spans received so far once predicate(spans) holds; raises after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"spans never matched; got {[(s['service'], s['name']) for s in self.spans]}")

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
