"""RateLimit response headers (draft-ietf-httpapi-ratelimit-headers-11).

``RateLimit-Policy: "<name>";q=<limit>;w=<window s>`` and
``RateLimit: "<name>";r=<remaining>;t=<s until the quota is whole again>``
for the tightest descriptor; optionally the older
``RateLimit-Limit/-Remaining/-Reset``; ``Retry-After`` on 429.
"""

from __future__ import annotations

import math


def _sf_string(text: str) -> str:
    # Structured-field String: only printable ASCII, with \ and " escaped.
    safe = "".join(c if 0x20 <= ord(c) < 0x7F else "_" for c in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ratelimit_headers(
    name: str,
    limit: int,
    window_s: int,
    remaining: int,
    reset_ms: int,
    *,
    legacy: bool = False,
    retry_after_s: int | None = None,
) -> dict:
    reset_s = max(0, math.ceil(reset_ms / 1000))
    label = _sf_string(name)
    headers = {
        "ratelimit-policy": f"{label};q={limit};w={window_s}",
        "ratelimit": f"{label};r={max(0, remaining)};t={reset_s}",
    }
    if legacy:
        headers["ratelimit-limit"] = str(limit)
        headers["ratelimit-remaining"] = str(max(0, remaining))
        headers["ratelimit-reset"] = str(reset_s)
    if retry_after_s is not None:
        headers["retry-after"] = str(retry_after_s)
    return headers
