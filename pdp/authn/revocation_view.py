"""Each PDP worker's local copy of the revocation denylist, for Redis outages.

Fed by a full load of the index (at start, after any Redis error, after the
stream was trimmed past us, and every FULL_RELOAD_S) and by reading the
stream in between, every sync_s. While Redis is unreachable the denylist asks
offline_verdict(): a token revoked up to the last good sync stays refused,
any other is accepted, but only while that sync is at most grace_s old;
after that, or if no load ever succeeded, the answer is "unknown" and the
request fails closed (503 auth_unavailable). grace_s = 0 keeps the old
behaviour: fail closed at once.

A revocation is never undone, so the view is also consulted while Redis is
up: one Redis has lost (restart without persistence, FLUSHALL) still applies,
and the next full load writes it back to Redis for the other workers.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from .revocation import INDEX_KEY, STREAM_KEY, restore_revocations

log = logging.getLogger("lucid.pdp.revocation")

FULL_RELOAD_S = 300.0
# Set once by whichever worker loads first; gone or changed means Redis lost its data
# (restart without persistence, FLUSHALL) even when the stream was empty before.
MARK_KEY = "lucid:revocations:mark"
_PAGE = 5000
_SKIP_REDIS_S = 0.25  # after an error, answer from the view this long instead of timing out again


def _id_tuple(stream_id) -> tuple:
    if isinstance(stream_id, bytes):
        stream_id = stream_id.decode()
    ms, _, seq = str(stream_id).partition("-")
    return int(ms), int(seq or 0)


class LocalRevocationView:
    def __init__(
        self,
        client,
        grace_s: float,
        sync_s: float = 1.0,
        max_entries: int = 1_000_000,
        clock=time.time,
        monotonic=time.monotonic,
    ):
        self._redis = client
        self._grace_s = grace_s
        self._sync_s = sync_s
        self._max_entries = max_entries
        self._clock = clock
        self._mono = monotonic
        self._entries: dict[str, float] = {}
        self._last_id = "0-0"
        self._synced_at: float | None = None  # monotonic time of the last good sync
        self._loaded_at = 0.0
        self._needs_full = True
        self._mark = None
        self._overflow = False
        self._skip_until = 0.0
        self._offline_logged = False
        self._stop = threading.Event()
        self._thread = None

    # --- what the denylist asks -------------------------------------------------

    def redis_known_down(self) -> bool:
        return self._mono() < self._skip_until

    def note_redis_error(self) -> None:
        self._skip_until = self._mono() + _SKIP_REDIS_S
        self._needs_full = True

    def offline_verdict(self, digest: str):
        """True (revoked), False (not revoked as of the last sync) or None (unknown: fail closed)."""
        if self._synced_at is None or self._overflow or self._grace_s <= 0:
            return None
        age = self._mono() - self._synced_at
        if age > self._grace_s:
            if self._offline_logged != "closed":
                log.warning(
                    "revocation view %.0f s old, over JWT_REVOCATION_OUTAGE_S=%s: failing closed", age, self._grace_s
                )
                self._offline_logged = "closed"
            return None
        if not self._offline_logged:
            log.warning("Redis unreachable: revocations answered from the local view (%d entries)", len(self._entries))
            self._offline_logged = True
        expires = self._entries.get(digest)
        return expires is not None and expires > self._clock()

    def synced_within(self, seconds: float) -> bool:
        """True when the last good sync is at most `seconds` old and holds every revocation."""
        return self._synced_at is not None and not self._overflow and self._mono() - self._synced_at <= seconds

    def knows(self, digest: str) -> bool:
        expires = self._entries.get(digest)
        return expires is not None and expires > self._clock()

    def add(self, digest: str, expires: float) -> None:
        """A revocation this worker made itself: known at once."""
        self._entries[digest] = expires

    def __len__(self) -> int:
        return len(self._entries)

    # --- keeping it current -------------------------------------------------------

    def sync_once(self) -> bool:
        try:
            if self._needs_full or self._mono() - self._loaded_at > FULL_RELOAD_S:
                self._full_load()
            else:
                self._read_stream()
        except redis.RedisError as err:
            self.note_redis_error()
            log.debug("revocation sync failed: %s", err.__class__.__name__)
            return False
        self._synced_at = self._mono()
        if self._offline_logged:
            log.warning("Redis reachable again: revocation view reloaded (%d entries)", len(self._entries))
            self._offline_logged = False
        return True

    def _full_load(self) -> None:
        self._redis.set(MARK_KEY, os.urandom(8).hex(), nx=True)
        mark = self._redis.get(MARK_KEY)
        # The stream position first: what is written after it is read from the stream next.
        last = self._redis.xrevrange(STREAM_KEY, "+", "-", count=1)
        last_id = last[0][0] if last else "0-0"
        now = self._clock()
        entries: dict[str, float] = {}
        start = 0
        while True:
            page = self._redis.zrangebyscore(INDEX_KEY, now, "+inf", start=start, num=_PAGE, withscores=True)
            for member, score in page:
                entries[member.decode() if isinstance(member, bytes) else member] = float(score)
            if len(page) < _PAGE:
                break
            start += _PAGE
            if len(entries) > self._max_entries:
                break
        self._redis.zremrangebyscore(INDEX_KEY, "-inf", now)
        # What we knew and Redis no longer has (lost in a restart or FLUSHALL, not expired)
        # is kept and written back: revocations are never undone.
        lost = {d: e for d, e in self._entries.items() if e > now and d not in entries}
        if lost:
            restored = restore_revocations(self._redis, lost, self._clock)
            log.warning("Redis had lost %d revocations this worker knew; %d written back", len(lost), restored)
            entries.update(lost)
        self._overflow = len(entries) > self._max_entries
        self._entries = entries
        self._last_id = last_id.decode() if isinstance(last_id, bytes) else str(last_id)
        self._loaded_at = self._mono()
        self._mark = mark
        self._needs_full = False

    def _read_stream(self) -> None:
        if self._redis.get(MARK_KEY) != self._mark:
            self._full_load()
            return
        first = self._redis.xrange(STREAM_KEY, "-", "+", count=1)
        gone = not first and self._last_id != "0-0"
        if gone or (first and _id_tuple(first[0][0]) > _id_tuple(self._last_id)):
            # Gone, trimmed past our position, or recreated (restart, FLUSHALL).
            self._full_load()
            return
        while True:
            reply = self._redis.xread({STREAM_KEY: self._last_id}, count=_PAGE)
            if not reply:
                return
            _, messages = reply[0]
            for msg_id, fields in messages:
                digest = fields.get(b"d") or fields.get("d")
                expires = fields.get(b"e") or fields.get("e")
                if digest is not None and expires is not None:
                    self._entries[digest.decode() if isinstance(digest, bytes) else digest] = float(expires)
                self._last_id = msg_id.decode() if isinstance(msg_id, bytes) else str(msg_id)
            self._overflow = self._overflow or len(self._entries) > self._max_entries
            if len(messages) < _PAGE:
                return

    def start(self) -> None:
        """Loads once now (so a worker that starts with Redis up has a view) and keeps syncing."""
        if self._thread is not None:
            return
        self.sync_once()
        self._thread = threading.Thread(target=self._run, name="revocation-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._sync_s):
            try:
                self.sync_once()
            except Exception:  # never let the sync thread die: the view would go stale silently
                log.exception("revocation sync crashed; retrying")
                self._needs_full = True
