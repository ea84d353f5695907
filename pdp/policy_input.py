"""Builds the policy's `input` from a check request, once per decision."""

from __future__ import annotations

from urllib.parse import parse_qs

from servicekit.request_path import normalize_target, path_segments
from servicekit.secret_params import is_secret_param

# Credentials are judged in Python before the policy runs; the policy (and the
# decision log) never see them.
# Secret query parameters (servicekit/secret_params.py, the list the proxy's access log uses too) likewise.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key", "set-cookie"})


def build_request(req: dict) -> dict:
    """input.request from a /v1/check request (already validated); raises AmbiguousPath."""
    path, query = normalize_target(req["path"])
    return {
        "method": req["method"].upper(),
        "path": path,
        "parsed_path": path_segments(path),
        "query": {k: v for k, v in parse_qs(query, keep_blank_values=True).items() if not is_secret_param(k)},
        "headers": {k: v for k, v in req.get("headers", {}).items() if k not in CREDENTIAL_HEADERS},
        "host": req.get("host", ""),
        "scheme": req.get("scheme", "http"),
        "client_ip": req.get("client_ip", ""),
        # The client certificate's identity (URI SAN or subject) when a TLS
        # front end (Envoy's ext_authz source.principal) verified one; else "".
        "client_principal": req.get("client_principal", ""),
    }


def public_subject(subject: dict) -> dict:
    """The subject as logged: claims reduced to what identifies the caller."""
    return {k: v for k, v in subject.items() if k != "claims"}
