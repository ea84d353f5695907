"""Small value types shared by the Redis path and the local fallback."""

from __future__ import annotations

from typing import NamedTuple

from .descriptors import Descriptor


class Prepared(NamedTuple):
    """A descriptor with its Redis keys resolved for one point in time."""

    d: Descriptor
    alg: str  # "tb" | "day" | "month" (the Lua script's codes)
    counter_key: str
    overrides_key: str
    index_key: str
    end_ms: int  # calendar window end (ms since epoch); 0 for token buckets
    tag: str  # the subject's hash tag: one Lua call per tag in Cluster


class Outcome(NamedTuple):
    """What one descriptor says about one request."""

    allowed: bool
    remaining: int
    reset_ms: int
    retry_after_ms: int
    limit: int
    burst: int
