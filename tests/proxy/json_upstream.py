"""A real upstream answering JSON with secrets in it, for the response transformation tests.

Run as `python json_upstream.py PORT`. Every answer carries Server,
X-Powered-By and X-Internal-Id headers. Paths:
  /user             a small JSON document with password/token fields, Content-Length
  /user-chunked     the same document streamed in pieces, no Content-Length
  /big?n=N          a JSON document of about N bytes holding a password field, Content-Length
  /big-chunked?n=N  the same, streamed
  /text             text/plain that mentions a password
  /broken           application/json that is not JSON
  /gzip             application/json with Content-Encoding: gzip
  /headers          echoes the request headers it received as JSON
"""

from gevent import monkey

monkey.patch_all()

import gzip  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

USER = {
    "id": 7,
    "name": "alice",
    "password": "hunter2",
    "profile": {
        "Token": "tok-123",
        "city": "Oslo",
        "keys": [{"secret": "s1", "label": "a"}, {"secret": "s2", "label": "b"}],
    },
}
COMMON = [("Server", "Apache/2.4.1 (Unix)"), ("X-Powered-By", "PHP/8.1"), ("X-Internal-Id", "node-3")]


def _big(n):
    return json.dumps({"password": "hunter2", "pad": "x" * max(0, n - 40)}).encode()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(query.get("n", ["0"])[0])
    json_type = [("Content-Type", "application/json; charset=utf-8")]
    if path in ("/user", "/big"):
        body = json.dumps(USER).encode() if path == "/user" else _big(n)
        start_response("200 OK", json_type + COMMON + [("Content-Length", str(len(body)))])
        return [body]
    if path in ("/user-chunked", "/big-chunked"):
        body = json.dumps(USER).encode() if path == "/user-chunked" else _big(n)
        start_response("200 OK", json_type + COMMON)
        return [body[i : i + 1000] for i in range(0, len(body), 1000)]
    if path == "/text":
        start_response("200 OK", [("Content-Type", "text/plain")] + COMMON)
        return [b'{"password": "hunter2"}']
    if path == "/broken":
        start_response("200 OK", json_type + COMMON)
        return [b'{"password": "hunter2", oops']
    if path == "/gzip":
        body = gzip.compress(json.dumps(USER).encode())
        start_response(
            "200 OK", json_type + COMMON + [("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))]
        )
        return [body]
    if path == "/headers":
        seen = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        body = json.dumps({"headers": seen}).encode()
        start_response("200 OK", json_type + COMMON)
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no"]


if __name__ == "__main__":
    WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None, error_log=None).serve_forever()
