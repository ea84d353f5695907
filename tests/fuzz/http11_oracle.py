"""A differential oracle for proxy/http11.py: h11 (a second, independent HTTP/1.1 parser).

Both parse one request from the same bytes. They must agree on accept or
reject and, when both accept, on the framing: method, target, version, header
fields, body bytes and the bytes left over for the next request. Where we are
stricter on purpose, "we reject, h11 accepts" is allowed only when the input
shows the documented reason (STRICTER, docs/proxy.md "Parser strictness");
"we accept, h11 rejects" is never allowed.
"""

import re
import socket

import h11

from proxy import http11

HEAD_LIMIT = 16384
# h11's chunk-size line, and ours: extensions without controls or obs-text, at most 15 hex digits.
_H11_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(;.*)?[ \t]*")
_OUR_CHUNK_LINE = re.compile(rb"[0-9A-Fa-f]{1,15}(?:;[\x09\x20-\x7e]*)?[ \t]*")
# Written apart from proxy/http11.py on purpose: RFC 3986 host[:port] with a
# name of unreserved characters only, or a bracketed IPv6 literal; port 1-5 digits <= 65535.
_STRICT_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9._~-]{1,253})(?::([0-9]{1,5}))?")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_CONTROL_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Disagreement(AssertionError):
    pass


class Outcome:
    """accept (with the framing), reject (with a reason), or incomplete (needs more bytes)."""

    def __init__(
        self, kind, reason="", method=b"", target=b"", version=b"", headers=(), body=b"", rest=b"", chunked=False
    ):
        self.kind = kind
        self.reason = reason
        self.method = method
        self.target = target
        self.version = version
        self.headers = list(headers)
        self.body = body
        self.rest = rest
        self.chunked = chunked

    def framing(self):
        # h11 hands Transfer-Encoding back lower-cased; the coding name is case-insensitive.
        headers = [(n, v.lower() if n == b"transfer-encoding" else v) for n, v in self.headers]
        # h11 keeps one of several identical Content-Length lines; the framing is the same.
        headers = [h for i, h in enumerate(headers) if h[0] != b"content-length" or h not in headers[:i]]
        return (self.method, self.target, self.version, headers, self.body, self.rest)

    def __repr__(self):
        if self.kind != "accept":
            return f"<{self.kind} {self.reason}>"
        return f"<accept {self.framing()!r}>"


def ours(data: bytes) -> Outcome:
    """proxy/http11.py on `data` over a real socket pair; only its own exceptions are allowed out."""
    left, right = socket.socketpair()
    try:
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        right.settimeout(5)
        reader = http11.SocketReader(right)
        try:
            head = reader.read_head(HEAD_LIMIT)
            req = http11.parse_request_head(head)
            if req.chunked:
                body = b"".join(http11.iter_chunked_body(reader))
            else:
                body = b"".join(http11.iter_fixed_body(reader, req.body_length or 0))
        except http11.ProtocolError as exc:
            return Outcome("reject", exc.detail)
        except http11.ConnectionClosed:
            return Outcome("incomplete")
        rest = b"".join(http11.iter_until_close(reader))
        headers = [(name.encode("ascii"), value.encode("latin-1")) for name, value in req.headers]
        return Outcome(
            "accept",
            method=req.method.encode(),
            target=req.target.encode(),
            version=req.version.encode()[5:],
            headers=headers,
            body=body,
            rest=rest,
            chunked=req.chunked,
        )
    finally:
        left.close()
        right.close()


def theirs(data: bytes) -> Outcome:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
    conn.receive_data(data)
    request = None
    body = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return _incomplete(request)
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return Outcome("reject", f"unexpected event {event!r}")
    except h11.RemoteProtocolError as exc:
        out = Outcome("reject", str(exc))
        out.request = request
        return out
    headers = [(bytes(name), bytes(value)) for name, value in request.headers]
    chunked = any(name == b"transfer-encoding" for name, _ in headers)
    out = Outcome(
        "accept",
        method=request.method,
        target=request.target,
        version=request.http_version,
        headers=headers,
        body=b"".join(body),
        rest=conn.trailing_data[0],
        chunked=chunked,
    )
    out.request = request
    return out


def _incomplete(request):
    out = Outcome("incomplete")
    out.request = request
    return out


def _head_lines(data: bytes):
    end = data.find(b"\r\n\r\n")
    return (data[:end] if end >= 0 else data).split(b"\r\n")


def _chunk_lines(data: bytes):
    """The lines after the head (chunk-size lines among them), CRLF-split."""
    end = data.find(b"\r\n\r\n")
    return data[end + 4 :].split(b"\r\n") if end >= 0 else []


def stricter_reason_holds(detail: str, data: bytes, them: Outcome) -> bool:
    """Whether our documented strictness explains rejecting what h11 accepted."""
    req = getattr(them, "request", None)
    headers = them.headers if them.kind == "accept" else (list(req.headers) if req is not None else [])
    values = lambda name: [bytes(v) for n, v in headers if bytes(n) == name]  # noqa: E731
    if detail == "methods are case-sensitive: use upper case":
        return req is not None and re.search(rb"[a-z]", bytes(req.method)) is not None
    if detail == "malformed Host header":
        for host in values(b"host"):
            match = _STRICT_HOST.fullmatch(host)
            if match is None or (match.group(1) is not None and int(match.group(1)) > 65535):
                return True
        return False
    if detail in ("bare LF in message head", "bare CR or LF in request head"):
        head = data.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in data else data
        return re.search(rb"(?<!\r)\n|\r(?!\n)", head) is not None
    if detail == "obsolete header line folding":
        lines = _head_lines(data)[1:] + (_chunk_lines(data) if them.chunked else [])
        return any(line[:1] in (b" ", b"\t") for line in lines)
    if detail == "both Content-Length and Transfer-Encoding":
        return bool(values(b"content-length")) and bool(values(b"transfer-encoding"))
    if detail == "malformed Content-Length":
        # h11 takes "3, 3" as 3 and allows 19-20 digits; we take one plain number of at most 18.
        return any(not re.fullmatch(rb"[0-9]{1,18}", v) for v in values(b"content-length")) or any(
            b"," in line for line in _head_lines(data) if line.lower().startswith(b"content-length")
        )
    if detail == "conflicting Content-Length headers":
        # h11 merges values that are equal as numbers ("3" and "03"); we want the same text.
        raw = [
            line.partition(b":")[2].strip(b" \t")
            for line in _head_lines(data)[1:]
            if line.lower().startswith(b"content-length")
        ]
        return len(set(raw)) > 1 or any(b"," in v for v in raw)
    if detail == "control character in header value":
        lines = _head_lines(data)[1:] + (_chunk_lines(data) if them.chunked else [])
        return any(_CONTROL_IN_VALUE.search(line.partition(b":")[2].strip(b" \t")) for line in lines)
    if detail == "Transfer-Encoding in an HTTP/1.0 request":
        return req is not None and bytes(req.http_version) == b"1.0" and bool(values(b"transfer-encoding"))
    if detail == "only HTTP/1.0 and HTTP/1.1 are served":
        return req is not None and bytes(req.http_version) not in (b"1.0", b"1.1")
    if detail == "malformed chunk size line":
        return any(
            _H11_CHUNK_LINE.fullmatch(line) and not _OUR_CHUNK_LINE.fullmatch(line) for line in _chunk_lines(data)
        )
    if detail == "framing or routing field in trailers":
        return them.chunked and any(
            re.match(rb"(?i)(content-length|transfer-encoding|host)[ \t]*:", line) for line in _chunk_lines(data)
        )
    if detail in ("malformed header field", "bare CR or LF in a trailer"):
        # Trailer lines: h11 folds and relaxes them like header lines; we check each line on its own.
        return them.chunked
    return False


def compare(data: bytes) -> None:
    """Raises Disagreement when the two parsers disagree beyond the documented strictness."""
    mine = ours(data)
    them = theirs(data)
    if mine.kind == "accept" and them.kind == "accept":
        if mine.framing() != them.framing():
            raise Disagreement(f"framing differs on {data!r}: ours {mine!r}, h11 {them!r}")
        return
    if mine.kind == "accept":
        raise Disagreement(f"we accept what h11 {them.kind}s on {data!r}: ours {mine!r}, h11 {them!r}")
    if them.kind == "accept":
        if mine.kind == "incomplete" and _BARE_LF.search(data):
            return  # a bare LF never ends a line for us: we wait for CRLF (then refuse the line)
        if mine.kind == "incomplete":
            raise Disagreement(f"we wait for more where h11 has a whole request on {data!r}: {them!r}")
        if not stricter_reason_holds(mine.reason, data, them):
            raise Disagreement(
                f"we reject ({mine.reason}) what h11 accepts, and no documented strictness "
                f"explains it, on {data!r}: h11 {them!r}"
            )
    # Both refuse or wait: nothing is forwarded either way.
