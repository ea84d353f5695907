"""CheckRequest -> /v1/check request object; Decision -> CheckResponse.

The protos come from PyPI's xds-protos (generated from envoyproxy/data-plane-api).
"""

from __future__ import annotations

import http

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from servicekit.identity import is_identity_header

from ..problem import PROBLEM_JSON, problem_body

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_GRPC_CODE = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def request_headers(http_request) -> dict:
    """Lower-case header map without HTTP/2 pseudo-headers.

    Envoy sends either `headers` or, with encode_raw_headers, `header_map`
    (raw bytes; repeated names arrive as separate entries and are joined)."""
    out = {}
    if http_request.header_map.headers:
        for entry in http_request.header_map.headers:
            value = entry.raw_value.decode("latin-1") if entry.raw_value else entry.value
            name = entry.key.lower()
            out[name] = out[name] + "," + value if name in out else value
    else:
        for name, value in http_request.headers.items():
            out[name.lower()] = value
    return {k: v for k, v in out.items() if not k.startswith(":")}


def check_request(request) -> tuple[dict, dict]:
    """(the /v1/check `request` object, the raw headers) for one CheckRequest."""
    attrs = request.attributes
    http_request = attrs.request.http
    headers = request_headers(http_request)
    source = attrs.source
    client_ip = source.address.socket_address.address if source.HasField("address") else ""
    check = {
        "method": http_request.method or "GET",
        # Envoy's path is the request target as received: path and query, undecoded.
        "path": http_request.path or "/",
        "headers": headers,
        "host": http_request.host,
        "scheme": http_request.scheme or "http",
        "client_ip": client_ip,
    }
    # mTLS between client and Envoy: the peer certificate's URI SAN or subject.
    if source.principal:
        check["client_principal"] = source.principal
    return check, headers


def _header_options(headers: dict) -> list:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=_OVERWRITE)
        for k, v in headers.items()
    ]


def ok_response(decision, client_headers: dict):
    """Allow: identity headers set, the client's own identity headers removed, quota headers on the response."""
    set_names = set(decision.headers)
    remove = sorted(n for n in client_headers if is_identity_header(n) and n not in set_names)
    ok = external_auth_pb2.OkHttpResponse(
        headers=_header_options(decision.headers),
        headers_to_remove=remove,
        response_headers_to_add=_header_options(decision.response_headers),
    )
    return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)


def denied_response(status: int, reason: str, response_headers: dict | None = None, decision_id: str = ""):
    """Deny: the decided status with a problem+json body, as /v1/ext-authz answers."""
    problem_type = "quota-exceeded" if reason == "quota_exceeded" else None
    extra = {"decision_id": decision_id} if decision_id else {}
    body = problem_body(status, _title(status), reason, type_=problem_type, **extra)
    headers = {**(response_headers or {}), "content-type": PROBLEM_JSON, "x-lucid-reason": reason.split(":", 1)[0][:64]}
    if decision_id:
        headers["x-lucid-decision-id"] = decision_id
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=status), headers=_header_options(headers), body=body.decode()
    )
    code = _GRPC_CODE.get(status, code_pb2.PERMISSION_DENIED)
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=reason[:200]), denied_response=denied
    )


def check_response(decision, client_headers: dict):
    if decision.allow:
        return ok_response(decision, client_headers)
    return denied_response(decision.status, decision.reason, decision.response_headers, decision.decision_id)


def _title(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Denied"
