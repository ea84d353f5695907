"""The decision log's last entries in this worker, for the admin page's tail and replay."""

from __future__ import annotations

import collections
import threading


class RecentDecisions:
    """A bounded ring of decision-log entries (already masked: no credentials)."""

    def __init__(self, size: int = 500):
        self._entries = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, entry: dict) -> None:
        with self._lock:
            self._entries.append(entry)

    def find(self, decision_id: str) -> dict | None:
        with self._lock:
            for entry in reversed(self._entries):
                if entry.get("decision_id") == decision_id:
                    return entry
        return None

    def tail(self, limit: int = 50, subject: str = "", route: str = "", decision: str = "") -> list:
        """Newest first; subject matches the sub, route is a path prefix, decision is allow or deny."""
        with self._lock:
            entries = list(self._entries)
        out = []
        for entry in reversed(entries):
            sub = ((entry.get("input") or {}).get("subject") or {}).get("sub") or ""
            if subject and subject != sub:
                continue
            if route and not (entry.get("path") or "").startswith(route):
                continue
            allowed = (entry.get("result") or {}).get("allow")
            if decision and (decision == "allow") != bool(allowed):
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out
