"""The proxy's corpus of hostile request targets (tests/proxy/data/hostile_targets.tsv),
and the check that a gateway in front of the PDP sends the upstream exactly the
path the policy judged: the same corpus for our proxy and for each Envoy config."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

from servicekit.request_path import normalize_target

CORPUS = Path(__file__).resolve().parents[1] / "proxy" / "data" / "hostile_targets.tsv"
# What no upstream should ever be handed to interpret its own way.
_AMBIGUOUS_ENCODINGS = ("%2f", "%5c", "%00", "%25", "#")


def load_corpus() -> list[tuple[str, str]]:
    """[(target, expected)]: the normalized path and query, or "400"."""
    cases = []
    for line in CORPUS.read_text().splitlines():
        if line and not line.startswith("#"):
            target, expected = line.split("\t")
            cases.append((target, expected))
    return cases


def raw_get(port: int, target: str, authorization: str) -> tuple[int, bytes]:
    """Sends the target byte for byte (requests would re-encode it); (status, body).
    A fresh X-Request-ID goes with it, for a gateway that passes the client's
    own to the PDP and the upstream (nginx); Envoy makes its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {authorization}\r\n"
            f"X-Request-ID: {uuid.uuid4()}\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def judged(pdp_output: str, request_id: str) -> dict | None:
    """The decision log entry of one request (the gateway passes its x-request-id to both sides)."""
    for line in reversed(pdp_output.splitlines()):
        if request_id in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("request_id") == request_id:
                return entry
    return None


def assert_upstream_got_only_what_was_judged(status: int, body: bytes, pdp_output: str, target: str, expected: str):
    """The echo upstream's answer `body` (or the gateway's refusal) for `target`,
    sent with a token the policy allows everywhere: either nothing reached the
    upstream (a 400, 403 or 404), or it got an allowed, already normalized path,
    the one the PDP judged. An upstream that resolves dot segments or escapes
    its own way then cannot route the request anywhere else."""
    reached = b'"service"' in body and b"bench-upstream" in body
    if not reached:
        assert status in (400, 403, 404), (target, status, body[:200])
        return
    assert expected != "400" or not any(bad in target.lower() for bad in _AMBIGUOUS_ENCODINGS), target
    seen = json.loads(body)
    entry = judged(pdp_output, seen["headers"]["x-request-id"])
    assert entry is not None and entry["result"]["allow"], (target, seen["path"])
    sent_path = seen["path"].split("?")[0]
    assert "/../" not in sent_path + "/" and "/./" not in sent_path + "/", (target, seen["path"])
    assert "//" not in sent_path and "\\" not in sent_path and "%2e" not in sent_path.lower(), (target, seen["path"])
    upstream_path, _ = normalize_target(seen["path"])
    assert upstream_path == entry["path"], (target, seen["path"], entry["path"])
    if expected != "400":
        assert entry["path"] == expected.split("?")[0], (target, entry["path"])
