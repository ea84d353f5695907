"""Hostile strings for the engine and end-to-end tests: what a signed claim, a
header or a path segment may carry to try to change the shape of a decision."""

from __future__ import annotations

JSON_FRAGMENTS = [
    'user", "x-user-roles":"admin',
    'victim", "name":"x',
    'user", "x-user-mfa":"true',
    '", "burst":777777, "name":"x',
    '"}, "allow": true, "x": {"',
    '{"a": 1}',
    "[1, 2]",
    "null",
    "true",
    '"',
    '\\"',
    "\\",
    '\\\\"',
    "\\u0022",
    "\\n",
]
CONTROL = [chr(c) for c in range(0x20)] + ["\x7f", "a\r\nx-injected: 1", "a\tb"]
UNICODE = ["\u2028", "\u2029", "\ufeff", "\u00e9", "\U0001f600", "a\u0000b", "</script>&<>"]
BIG = ['a"' * 32768, "\\" * 65536, "\u2028" * 21846]  # 64 KiB each (in UTF-8)
LONE_SURROGATES = ["\ud800", "a\udfffb", "\ud83d"]

HOSTILE = JSON_FRAGMENTS + CONTROL + UNICODE + BIG
FIELDS = ("sub", "roles", "plan", "path_segment", "query", "header", "client_ip")


def with_hostile(input_doc: dict, field: str, value: str) -> dict:
    """A copy of a policy input (decision table shape) with value put in one field."""
    request = dict(input_doc.get("request", {}))
    subject = dict(input_doc.get("subject", {}))
    if field == "sub":
        subject.update(authenticated=True, sub=value)
    elif field == "roles":
        subject.update(
            authenticated=True, sub=subject.get("sub") or "alice", roles=list(subject.get("roles", [])) + [value]
        )
    elif field == "plan":
        subject.update(authenticated=True, sub=subject.get("sub") or "alice", plan=value)
    elif field == "path_segment":
        segments = list(request.get("parsed_path", []))
        # The last segment is an {id} in most routes: the policy matches and copies it.
        request["parsed_path"] = (segments[:-1] if len(segments) > 3 else segments) + [value]
        request["path"] = "/" + "/".join(request["parsed_path"])
    elif field == "query":
        request["query"] = {value: [value]}
    elif field == "header":
        request["headers"] = {**request.get("headers", {}), "x-hostile": value}
    elif field == "client_ip":
        request["client_ip"] = value
    return {**input_doc, "request": request, "subject": subject}
