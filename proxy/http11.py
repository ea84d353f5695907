"""A strict HTTP/1.1 message reader for both sides of the proxy.

Strict on purpose: anything two parsers could read differently (both
Content-Length and Transfer-Encoding, obs-fold, bare LF, odd whitespace) is
rejected, because request smuggling lives in those differences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET_BAD = re.compile(rb"[\x00-\x20\x7f-\xff]")
# Framing numbers: ASCII only (str.isdigit() takes '²', int() then fails).
_DECIMAL = re.compile(r"[0-9]{1,18}")
# chunk-size [ chunk-ext ] with no CR, LF or other control (HTAB aside) and no obs-text.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:;[\x09\x20-\x7e]*)?[ \t]*")
# RFC 9112 3.2 / RFC 3986 host[:port]: a bracketed IPv6 literal or a name of
# unreserved characters (stricter: no pct-encoding or sub-delims), port 1-5 digits.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9._~-]{1,253})(?::[0-9]{1,5})?")
# Methods are case-sensitive; one with a lower-case letter (`get`) is refused
# instead of being judged as one method and forwarded as another.
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Z]+")
_NOT_IN_TRAILERS = frozenset(("content-length", "transfer-encoding", "host"))
_CHUNK_LINE_MAX = 4096
_TRAILER_MAX = 16384
RECV_BYTES = 65536


class ProtocolError(Exception):
    """The peer sent something that is not acceptable HTTP/1.1."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class HeadTooLarge(ProtocolError):
    def __init__(self, limit: int):
        super().__init__(431, f"request head exceeds {limit} bytes")


class ConnectionClosed(Exception):
    """The peer closed the connection (cleanly, between messages, when `clean`)."""

    def __init__(self, clean: bool = False):
        super().__init__("connection closed")
        self.clean = clean


class SocketReader:
    """Buffered reads from a (gevent) socket that know where a message head ends."""

    __slots__ = ("_sock", "_buf")

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = b""

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def wait_readable(self) -> None:
        """Blocks until at least one byte is buffered; ConnectionClosed(clean) on EOF."""
        if not self._buf:
            data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionClosed(clean=True)
            self._buf = data

    def read_head(self, limit: int) -> bytes:
        """Returns the bytes before the first CRLFCRLF (consumed), at most `limit` of them."""
        buf = self._buf
        start = 0
        while True:
            end = buf.find(b"\r\n\r\n", start)
            if end >= 0:
                if end > limit:
                    raise HeadTooLarge(limit)
                self._buf = buf[end + 4 :]
                return buf[:end]
            if len(buf) > limit:
                raise HeadTooLarge(limit)
            if b"\n\n" in buf or b"\n\r\n" in buf:
                raise ProtocolError(400, "bare LF in message head")
            start = max(0, len(buf) - 3)
            data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionClosed(clean=not buf)
            buf += data
            self._buf = buf

    def read_some(self, max_bytes: int) -> bytes:
        """At most `max_bytes`, whatever is available (b'' only at EOF)."""
        if self._buf:
            data = self._buf[:max_bytes]
            self._buf = self._buf[max_bytes:]
            return data
        return self._sock.recv(min(max_bytes, RECV_BYTES))

    def read_line(self, limit: int) -> bytes:
        buf = self._buf
        while True:
            end = buf.find(b"\r\n")
            if end >= 0:
                self._buf = buf[end + 2 :]
                return buf[:end]
            if len(buf) > limit:
                raise ProtocolError(400, "line too long")
            data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionClosed()
            buf += data
            self._buf = buf

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionClosed()
            self._buf += data
        data = self._buf[:n]
        self._buf = self._buf[n:]
        return data


def send_all(sock, data) -> None:
    """sock.sendall without gevent's getsockopt(SO_SNDBUF) syscall on every call:
    one send() takes a whole head or small body unless the socket buffer is full,
    and whatever it did not take goes through sendall."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


def parse_headers(lines: Iterable[bytes]) -> list[tuple[str, str]]:
    """[(lower-case name, value)] from header lines; rejects obs-fold and bad names."""
    headers = []
    for line in lines:
        if not line:
            continue
        if line[0] in b" \t":
            raise ProtocolError(400, "obsolete header line folding")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise ProtocolError(400, "malformed header field")
        value = value.strip(b" \t")
        if _FIELD_VALUE_BAD.search(value):
            raise ProtocolError(400, "control character in header value")
        headers.append((name.decode("ascii").lower(), value.decode("latin-1")))
    return headers


class Request:
    """A parsed request head. Headers keep their order and repeats."""

    __slots__ = ("method", "target", "version", "headers", "body_length", "chunked", "keep_alive", "raw_head_bytes")

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def has_body(self) -> bool:
        return self.chunked or (self.body_length or 0) > 0


def parse_request_head(head: bytes) -> Request:
    lines = head.split(b"\r\n")
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise ProtocolError(400, "bare CR or LF in request head")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise ProtocolError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise ProtocolError(400, "malformed method")
    if not _METHOD.fullmatch(method):
        raise ProtocolError(400, "methods are case-sensitive: use upper case")
    if not target or _TARGET_BAD.search(target):
        raise ProtocolError(400, "malformed request target")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/"):
            raise ProtocolError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        raise ProtocolError(400, "malformed HTTP version")
    req = Request()
    req.method = method.decode("ascii")
    req.target = target.decode("ascii")
    req.version = version.decode("ascii")
    req.headers = parse_headers(lines[1:])
    req.raw_head_bytes = len(head) + 4
    _frame_request(req)
    return req


def _frame_request(req: Request) -> None:
    lengths = req.header_values("content-length")
    codings = req.header_values("transfer-encoding")
    if lengths and codings:
        raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
    req.chunked = False
    req.body_length = 0
    if codings:
        if req.version == "HTTP/1.0":
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) != 1 or not codings[0].isascii() or codings[0].lower() != "chunked":
            raise ProtocolError(501, "only the chunked transfer coding is supported")
        req.chunked = True
        req.body_length = None
    elif lengths:
        req.body_length = parse_content_length(lengths)
    hosts = req.header_values("host")
    if len(hosts) > 1:
        raise ProtocolError(400, "more than one Host header")
    if hosts and hosts[0] and not valid_host(hosts[0]):
        raise ProtocolError(400, "malformed Host header")
    if req.version == "HTTP/1.1" and req.header("host") is None:
        raise ProtocolError(400, "missing Host header")
    connection = ",".join(req.header_values("connection")).lower()
    if req.version == "HTTP/1.1":
        req.keep_alive = "close" not in connection
    else:
        req.keep_alive = False


def valid_host(value: str) -> bool:
    """host[:port] as RFC 3986 allows it (stricter on names); the port is at most 65535."""
    if not _HOST.fullmatch(value):
        return False
    if not value.endswith("]") and ":" in value:
        return int(value.rsplit(":", 1)[1]) <= 65535
    return True


def parse_content_length(values: Sequence[str]) -> int:
    # Values arrive without SP/HTAB around them (parse_headers); no other
    # whitespace is taken away.
    distinct = set(values)
    if len(distinct) != 1:
        raise ProtocolError(400, "conflicting Content-Length headers")
    value = distinct.pop()
    if not _DECIMAL.fullmatch(value):
        raise ProtocolError(400, "malformed Content-Length")
    return int(value)


def iter_fixed_body(reader: SocketReader, length: int, chunk_bytes: int = RECV_BYTES) -> Iterator[bytes]:
    """Yields exactly `length` bytes in pieces; ConnectionClosed if the peer stops early."""
    remaining = length
    while remaining > 0:
        data = reader.read_some(min(chunk_bytes, remaining))
        if not data:
            raise ConnectionClosed()
        remaining -= len(data)
        yield data


def iter_chunked_body(reader: SocketReader, chunk_bytes: int = RECV_BYTES) -> Iterator[bytes]:
    """Decodes a chunked body, yielding data pieces; trailers are read and dropped."""
    while True:
        size = parse_chunk_line(reader.read_line(_CHUNK_LINE_MAX))
        if size == 0:
            trailer_bytes = 0
            while True:
                trailer = reader.read_line(_CHUNK_LINE_MAX)
                if not trailer:
                    return
                trailer_bytes += len(trailer)
                if trailer_bytes > _TRAILER_MAX:
                    raise ProtocolError(400, "trailers too large")
                parse_trailer(trailer)
        yield from iter_fixed_body(reader, size, chunk_bytes)
        if reader.read_exact(2) != b"\r\n":
            raise ProtocolError(400, "malformed chunk terminator")


def parse_chunk_line(line: bytes) -> int:
    """The size from a chunk-size line (CRLF removed); the extension is checked, then ignored."""
    match = _CHUNK_LINE.fullmatch(line)
    if match is None:
        raise ProtocolError(400, "malformed chunk size line")
    return int(match.group(1), 16)


def parse_trailer(line: bytes) -> None:
    """A trailer line must be a well-formed field (it is dropped, but never a smuggling carrier)."""
    if b"\r" in line or b"\n" in line:
        raise ProtocolError(400, "bare CR or LF in a trailer")
    for name, _ in parse_headers([line]):
        if name in _NOT_IN_TRAILERS:
            # RFC 9110 6.5.1: framing and routing fields have no place in trailers.
            raise ProtocolError(400, "framing or routing field in trailers")


def iter_until_close(reader: SocketReader, chunk_bytes: int = RECV_BYTES) -> Iterator[bytes]:
    while True:
        data = reader.read_some(chunk_bytes)
        if not data:
            return
        yield data


class Response:
    """A parsed upstream response head."""

    __slots__ = ("status", "reason", "version", "headers", "body_length", "chunked", "keep_alive")


def parse_response_head(head: bytes, request_method: str) -> Response:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProtocolError(502, "upstream sent a malformed status line")
    resp = Response()
    resp.version = parts[0].decode("ascii")
    resp.status = int(parts[1])
    resp.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    try:
        resp.headers = parse_headers(lines[1:])
    except ProtocolError:
        raise ProtocolError(502, "upstream sent malformed headers") from None
    connection = ",".join(v for k, v in resp.headers if k == "connection").lower()
    resp.keep_alive = resp.version == "HTTP/1.1" and "close" not in connection
    resp.chunked = False
    resp.body_length = None
    if request_method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
        resp.body_length = 0
        if request_method == "HEAD":
            # Some servers send a body to HEAD anyway; never reuse such a connection.
            resp.keep_alive = False
        return resp
    codings = [v for k, v in resp.headers if k == "transfer-encoding"]
    lengths = [v for k, v in resp.headers if k == "content-length"]
    if codings:
        if lengths:
            # RFC 9112 6.3: Transfer-Encoding wins, but the message may be a response-splitting
            # attempt. Its Content-Length is dropped (never forwarded), and the connection is not
            # reused: a hop that framed it by that length is out of step with us on what comes next.
            resp.headers = [(k, v) for k, v in resp.headers if k != "content-length"]
            resp.keep_alive = False
        listed = [c.strip(" \t").lower() for c in ",".join(codings).split(",")]
        if [c for c in listed if c] != ["chunked"]:
            # Transfer-Encoding is hop-by-hop: the proxy re-frames the body as chunked,
            # so another coding (gzip, xchunked...) would reach the client undeclared.
            raise ProtocolError(502, "upstream used a transfer coding other than chunked")
        resp.chunked = True
    elif lengths:
        try:
            resp.body_length = parse_content_length(lengths)
        except ProtocolError:
            raise ProtocolError(502, "upstream sent a malformed Content-Length") from None
    else:
        resp.keep_alive = False  # read until close
    return resp


def response_body(reader: SocketReader, resp: Response) -> Iterator[bytes]:
    if resp.chunked:
        return iter_chunked_body(reader)
    if resp.body_length is not None:
        return iter_fixed_body(reader, resp.body_length)
    return iter_until_close(reader)


REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def render_head(status: int, headers: Iterable[tuple[str, str]], reason: str | None = None) -> bytes:
    """Status line plus headers plus the blank line, as bytes."""
    reason = reason or REASONS.get(status, "Unknown")
    parts = [f"HTTP/1.1 {status} {reason}\r\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def render_request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """Request line plus headers plus the blank line, as bytes (for the upstream)."""
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")
