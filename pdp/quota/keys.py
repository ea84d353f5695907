"""Redis key names and calendar windows.

All of one subject's keys carry the subject in a hash tag, e.g.
``lucid:q:{user:alice}:c:per_user_minute``, so they live in one Redis Cluster
slot and one Lua script can touch them all.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

DEFAULT_PREFIX = "lucid:q:"


def _tag_safe(key: str) -> str:
    # Braces inside the tag would end it early and merge subjects' slots.
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def subject_tag(key: str) -> str:
    return "{" + _tag_safe(key) + "}"


def calendar_window(algorithm: str, now_s: float) -> tuple[str, int, int]:
    """Returns (window id, start ms, end ms) of the UTC day or month holding now_s."""
    # Constant within a UTC day (UTC has no leap seconds in Unix time): computed
    # once a day instead of twice per decision (~10 us each with strftime).
    return _window_of_day(algorithm, int(now_s // 86400))


@functools.lru_cache(maxsize=16)
def _window_of_day(algorithm: str, day: int) -> tuple[str, int, int]:
    now = datetime.fromtimestamp(day * 86400, tz=timezone.utc)
    if algorithm == "calendar_day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        window_id = start.strftime("d%Y%m%d")
        end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=timezone.utc)
    elif algorithm == "calendar_month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        window_id = start.strftime("m%Y%m")
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
    else:
        raise ValueError(f"not a calendar algorithm: {algorithm}")
    return window_id, int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class KeySpace:
    """Builds the Redis keys of one deployment (one prefix)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX):
        self.prefix = prefix

    def base(self, key: str) -> str:
        return f"{self.prefix}{subject_tag(key)}"

    def counter(self, key: str, name: str, algorithm: str, now_s: float) -> tuple[str, int]:
        """Returns (counter key, ms until a calendar window ends; 0 for token buckets)."""
        if algorithm == "token_bucket":
            return f"{self.base(key)}:c:{name}", 0
        window_id, _, end_ms = calendar_window(algorithm, now_s)
        return f"{self.base(key)}:c:{name}:{window_id}", max(1, end_ms - int(now_s * 1000))

    def overrides(self, key: str) -> str:
        return f"{self.base(key)}:o"

    def index(self, key: str) -> str:
        return f"{self.base(key)}:i"

    def analytics(self, kind: str, minute: int) -> str:
        # One fixed tag: analytics of all subjects share a slot, apart from counters.
        return f"{self.prefix}{{analytics}}:{kind}:{minute}"
