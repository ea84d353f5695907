"""AuditLog: one MongoDB document per admin action (the seed asks for an audit trail).

A record: {"_id", "at", "actor", "action", "target", "before", "after",
"request_id"}. It is written BEFORE the change it describes, so no change
is ever unaudited; if the change then does not happen, the record is marked
``"applied": false``.
"""

from __future__ import annotations

import secrets

from pymongo.errors import PyMongoError

from .errors import StoreUnavailable
from .store import utcnow


class AuditLog:
    def __init__(self, db, clock=utcnow):
        self._audit = db["audit"]
        self._clock = clock

    def write(self, *, actor: str, action: str, target: str, before: dict, after: dict, request_id: str) -> str:
        """Records an action about to be applied; returns the record id."""
        record = {
            "_id": "a_" + secrets.token_hex(12),
            "at": self._clock(),
            "actor": actor,
            "action": action,
            "target": target,
            "before": before,
            "after": after,
            "request_id": request_id,
            "applied": True,
        }
        try:
            self._audit.insert_one(record)
        except PyMongoError as err:
            raise StoreUnavailable(f"MongoDB unavailable ({err.__class__.__name__})") from None
        return record["_id"]

    def mark_not_applied(self, record_id: str, why: str) -> None:
        try:
            self._audit.update_one({"_id": record_id}, {"$set": {"applied": False, "not_applied_reason": why}})
        except PyMongoError:
            pass  # the record then overstates; it never hides a change

    def for_target(self, target: str, limit: int = 50) -> list[dict]:
        try:
            return list(self._audit.find({"target": target}).sort("at", -1).limit(limit))
        except PyMongoError as err:
            raise StoreUnavailable(f"MongoDB unavailable ({err.__class__.__name__})") from None
