"""The quota descriptors a policy returns, validated before anything is spent."""

from __future__ import annotations

import re
from dataclasses import dataclass

ALGORITHMS = ("token_bucket", "calendar_day", "calendar_month")
FAIL_MODES = ("local", "open", "closed")
MAX_DESCRIPTORS = 16
_MAX_INT = 10**12
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_MAX_KEY_CHARS = 256
_FIELDS = {"name", "key", "limit", "window_s", "burst", "cost", "algorithm", "shadow", "fail_mode"}


class DescriptorError(ValueError):
    """A descriptor from the policy is malformed; the request is denied (fail closed)."""


@dataclass(frozen=True)
class Descriptor:
    name: str
    key: str
    limit: int
    window_s: int
    burst: int
    cost: int
    algorithm: str
    shadow: bool
    fail_mode: str

    @property
    def window_ms(self) -> int:
        return self.window_s * 1000


def _integer(raw: dict, field: str, default=None, minimum=0) -> int:
    value = raw.get(field, default)
    if value is None:
        raise DescriptorError(f"quota descriptor {raw.get('name')!r}: {field} is required")
    # Rego numbers may arrive as 100.0; bools are ints in Python and are refused.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DescriptorError(f"quota descriptor {raw.get('name')!r}: {field} must be an integer")
    if not minimum <= value <= _MAX_INT:
        raise DescriptorError(f"quota descriptor {raw.get('name')!r}: {field} must be in [{minimum}, {_MAX_INT}]")
    return value


def parse_descriptor(raw) -> Descriptor:
    """Validates one descriptor dict; raises DescriptorError naming the field."""
    if not isinstance(raw, dict):
        raise DescriptorError("quota descriptor must be an object")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise DescriptorError(
            f"quota descriptor {raw.get('name')!r}: unknown field(s) {', '.join(sorted(map(str, unknown)))}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise DescriptorError("quota descriptor name must match [A-Za-z0-9_.-]{1,64}")
    key = raw.get("key")
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_CHARS or not key.isprintable():
        raise DescriptorError(f"quota descriptor {name!r}: key must be 1-{_MAX_KEY_CHARS} printable characters")
    algorithm = raw.get("algorithm", "token_bucket")
    if algorithm not in ALGORITHMS:
        raise DescriptorError(f"quota descriptor {name!r}: algorithm must be one of {', '.join(ALGORITHMS)}")
    fail_mode = raw.get("fail_mode", "local")
    if fail_mode not in FAIL_MODES:
        raise DescriptorError(f"quota descriptor {name!r}: fail_mode must be one of {', '.join(FAIL_MODES)}")
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        raise DescriptorError(f"quota descriptor {name!r}: shadow must be a boolean")
    limit = _integer(raw, "limit", minimum=1)
    default_window = {"calendar_day": 86400, "calendar_month": 2678400}.get(algorithm)
    window_s = _integer(raw, "window_s", default_window, minimum=1)
    burst = _integer(raw, "burst", limit, minimum=1)
    cost = _integer(raw, "cost", 1, minimum=0)
    return Descriptor(
        name=name,
        key=key,
        limit=limit,
        window_s=window_s,
        burst=burst,
        cost=cost,
        algorithm=algorithm,
        shadow=shadow,
        fail_mode=fail_mode,
    )


def parse_descriptors(raw) -> list[Descriptor]:
    """Validates the policy's ``quotas`` list (None or [] means no quota)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DescriptorError("quotas must be a list of descriptors")
    if len(raw) > MAX_DESCRIPTORS:
        raise DescriptorError(f"at most {MAX_DESCRIPTORS} quota descriptors per request")
    descriptors = [parse_descriptor(item) for item in raw]
    seen = set()
    for d in descriptors:
        if (d.key, d.name) in seen:
            raise DescriptorError(f"quota descriptor {d.name!r} appears twice for one key")
        seen.add((d.key, d.name))
    return descriptors
