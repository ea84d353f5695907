"""A stand-in for one of the seed's backend clusters, for `make run` and tests.

It answers every request with JSON describing what reached it, so that a user
who curls the gateway sees exactly what the proxy forwarded: the path after
normalization, the identity headers the PDP added, and that the client's own
credentials and spoofed headers were (or were not) stripped.

Usage: python -m devenv.standins.echo_service SERVICE_NAME [--host H] [--port P]
"""

import argparse
import json
import signal
import sys
from urllib.parse import parse_qs

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIHandler, WSGIServer

# Bodies are counted, never kept: a stand-in must not grow with what it is sent.
_READ_CHUNK_BYTES = 64 * 1024


class RawPathHandler(WSGIHandler):
    """Keeps the request target exactly as received (PATH_INFO is percent-decoded)."""

    def get_environ(self):
        env = super().get_environ()
        env["lucid.raw_target"] = self.path
        return env


def _request_headers(environ) -> dict:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _drain(stream) -> int:
    total = 0
    while True:
        chunk = stream.read(_READ_CHUNK_BYTES)
        if not chunk:
            return total
        total += len(chunk)


def create_app(service_name: str):
    """Returns a WSGI app that echoes each request it receives as JSON.

    Args:
        service_name: reported as "service", so a reply shows which cluster answered.
    """

    def echo(environ, start_response):
        raw_target = environ.get("lucid.raw_target") or environ.get("PATH_INFO", "/")
        path = raw_target.split("?", 1)[0]
        query = environ.get("QUERY_STRING", "")
        body_bytes = _drain(environ["wsgi.input"])
        reply = {
            "service": service_name,
            "method": environ["REQUEST_METHOD"],
            "path": path,
            "query": parse_qs(query, keep_blank_values=True),
            "headers": _request_headers(environ),
            "body_bytes": body_bytes,
        }
        payload = json.dumps(reply, indent=2, sort_keys=True).encode() + b"\n"
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("X-Standin-Service", service_name),
            ],
        )
        return [payload]

    return echo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", help="name reported in every reply, e.g. blockchain-core")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    server = WSGIServer(
        (args.host, args.port), create_app(args.service), handler_class=RawPathHandler, log=None, error_log=sys.stderr
    )
    # A signal only asks for the stop; it happens once the server has fully
    # started, so a SIGTERM that arrives during startup cannot break it.
    stop_requested = Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, stop_requested.set)
    server.start()
    print(f"{args.service} stand-in listening on http://{args.host}:{args.port}", flush=True)
    stop_requested.wait()
    server.stop(timeout=2)  # stop accepting, let in-flight replies (tiny) finish
    return 0


if __name__ == "__main__":
    sys.exit(main())
