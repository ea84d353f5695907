"""Seed inputs for the fuzz targets, from the data-driven corpora the tests already keep."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_REQUESTS = ROOT / "tests" / "proxy" / "data" / "hostile_requests.tsv"


def hostile_requests() -> list:
    """The request bytes of tests/proxy/data/hostile_requests.tsv (Python bytes escapes)."""
    out = []
    for line in HOSTILE_REQUESTS.read_text(encoding="ascii").splitlines():
        if line and not line.startswith("#"):
            escaped = line.rsplit("\t", 1)[0]
            out.append(escaped.encode("ascii").decode("unicode_escape").encode("latin-1"))
    return out


def check_bodies() -> list:
    """/v1/check bodies: well-formed ones and near misses."""
    good = {
        "request": {
            "method": "GET",
            "path": "/api/v1/users/me?x=1",
            "headers": {"authorization": "Bearer x"},
            "host": "gw.example",
            "scheme": "https",
            "client_ip": "203.0.113.7",
        }
    }
    docs = [
        good,
        {"request": {**good["request"], "path": "/a/../../b"}},
        {"request": {**good["request"], "method": "get"}},
        {"request": {**good["request"], "path": "/a/%C3%A9/%C0%AE%C0%AE/b"}},  # UTF-8, then an overlong dot
        {"request": {"method": "GET"}},
        {"request": {**good["request"], "headers": {"x": 1}}},
        {"request": []},
        [],
        "x",
        None,
    ]
    bodies = [json.dumps(d).encode() for d in docs] + [b"{", b"\xff\xfe", b'{"request": {"path": "\\ud800"}}']
    # The target's first byte picks raw mode (odd) or structured mode: seeds are raw bodies.
    return [b"\x01" + body for body in bodies]


def write(directory: Path, inputs) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(inputs):
        (directory / f"seed-{i:03d}").write_bytes(data)
    return directory
