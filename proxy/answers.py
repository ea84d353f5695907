"""What the proxy writes to the client: its own answers, and whether the connection stays open.

Every stage that answers the client itself (a problem, a redirect, a CORS
preflight, a meta endpoint) goes through `Answers.answer`; relaying
(proxy/relay.py) and tunnelling (proxy/tunnel.py) write through `send` and ask
`Answers.must_close` for the responses they pass on from the upstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import http11, problems

if TYPE_CHECKING:
    import socket

    from .gateway import Exchange

Headers = list[tuple[str, str]]


class Abort(Exception):
    """The client connection cannot continue (a write failed or a response was cut)."""


def send(sock: socket.socket, data: bytes) -> None:
    """Writes to the client; Abort when it is gone."""
    try:
        http11.send_all(sock, data)
    except OSError:
        raise Abort() from None


def cors_headers(ex: Exchange) -> Headers:
    """The CORS response headers for an origin the route allows (none otherwise)."""
    cors = ex.route.cors if ex.route else None
    origin = ex.request.header("origin")
    if not cors or not origin or not cors.allows(origin):
        return []
    out = [
        ("access-control-allow-origin", origin if cors.allow_credentials or "*" not in cors.allow_origins else "*"),
        ("vary", "Origin"),
    ]
    if cors.allow_credentials:
        out.append(("access-control-allow-credentials", "true"))
    if cors.expose_headers:
        out.append(("access-control-expose-headers", ", ".join(cors.expose_headers)))
    return out


class Answers:
    """The responses a worker makes itself (never streamed), and its drain flag.

    `draining` (set when the worker stops) makes every response close its
    connection, so that clients move to another worker.
    """

    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False

    def must_close(self, ex: Exchange) -> bool:
        """Whether the connection closes after this response; marks the exchange so if it does.

        An unread body would be taken for the next request, so it closes too.
        """
        if not ex.keep_alive or not ex.body_consumed or self.draining:
            ex.keep_alive = False
            return True
        return False

    def problem(
        self,
        ex: Exchange,
        sock: socket.socket,
        status: int,
        detail: str,
        slug: str,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        """An RFC 9457 problem+json answer; a 5xx is also the exchange's error for the access log."""
        if status >= 500 and not ex.error:
            ex.error = detail
        status, headers, body = problems.problem(status, detail, ex.request_id, slug)
        self.answer(ex, sock, status, headers + list(extra), body)

    def answer(
        self, ex: Exchange, sock: socket.socket, status: int, headers: Iterable[tuple[str, str]], body: bytes
    ) -> None:
        """A whole response with the request id and CORS headers added."""
        headers = list(headers)
        headers.append(("x-request-id", ex.request_id))
        headers.extend(cors_headers(ex))
        headers.append(("content-length", str(len(body))))
        if self.must_close(ex):
            headers.append(("connection", "close"))
        ex.status = status
        ex.bytes_out = len(body)
        send(sock, http11.render_head(status, headers) + body)
