"""Memoized decisions, for policies that read no clock or randomness.

Keyed by exactly the input the policies read (see policy/analysis.py), and
thrown away whole when a new policy revision loads.
"""

from __future__ import annotations

import json
from collections import OrderedDict


class DecisionMemo:
    def __init__(self, max_entries: int):
        self._max = max_entries
        self._entries: OrderedDict[str, object] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(input_doc: dict) -> str:
        return json.dumps(input_doc, sort_keys=True, separators=(",", ":"))

    def get(self, key: str):
        try:
            value = self._entries[key]
        except KeyError:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value) -> None:
        if self._max <= 0:
            return
        self._entries[key] = value
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
