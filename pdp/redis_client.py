"""One place that turns REDIS_URL into a client with short timeouts."""
from __future__ import annotations

import redis


def connect(url: str, timeout_s: float):
    """A Redis client whose every call is bounded by timeout_s (connect and read)."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                health_check_interval=0, retry_on_timeout=False)
