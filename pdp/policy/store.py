"""The policy being served, and hot reload.

A reload compiles the new bundle beside the old one and swaps a single
reference, so a request in flight finishes on the policy it started with and
none is dropped. A broken edit keeps the last good policy serving.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from ..memo import DecisionMemo
from .analysis import InputNeeds, input_needs
from .bundle import PolicyBundle, fingerprint, load_bundle
from .errors import PolicyError

log = logging.getLogger("lucid.pdp.policy")


@dataclasses.dataclass(frozen=True)
class ServedPolicy:
    bundle: PolicyBundle
    compiled: object
    needs: InputNeeds
    memo: DecisionMemo | None
    loaded_at: float

    @property
    def revision(self) -> str:
        return self.bundle.revision


class PolicyStore:
    def __init__(
        self,
        engine,
        policy_dir: str,
        settings_overlay: dict | None = None,
        memo_size: int = 10000,
        metrics=None,
        settle_s: float = 0.05,
    ):
        self._engine = engine
        self._dir = policy_dir
        self._overlay = settings_overlay or {}
        self._memo_size = memo_size
        self._metrics = metrics
        self._settle_s = settle_s
        self._fingerprint = None
        self.current: ServedPolicy | None = None
        self.last_error: str | None = None
        self.reloads = 0

    def start(self, fallback: PolicyBundle | None = None) -> None:
        """The first load of a worker. When the files on disk are broken, serve the
        bundle the server checked at startup instead of dying: a worker restarted
        after a bad edit must not take the whole PDP down. With nothing to serve
        (e.g. OPA not up yet), decisions are 503 and the watcher keeps trying."""
        try:
            self.load()
        except PolicyError as err:
            self.last_error = str(err)
            log.error("policy load failed: %s", err)
            if fallback is not None:
                try:
                    self.load(fallback)
                    self.last_error = str(err)
                    self._fingerprint = fingerprint(self._dir)
                    log.warning("serving the startup policy %s until the files are fixed", fallback.revision)
                except PolicyError as again:
                    log.error("startup policy failed too: %s", again)

    def load(self, bundle: PolicyBundle | None = None) -> ServedPolicy:
        """Loads and compiles the folder (or a given bundle); raises PolicyError (the old policy stays)."""
        fp = fingerprint(self._dir)
        if bundle is None:
            bundle = load_bundle(self._dir, self._overlay)
        compiled = self._engine.compile(bundle)
        needs = input_needs(bundle.modules, bundle.data)
        use_memo = needs.memoizable and self._engine.memoizable and self._memo_size > 0
        memo = DecisionMemo(self._memo_size) if use_memo else None
        self.current = ServedPolicy(bundle, compiled, needs, memo, time.time())
        self._fingerprint = fp
        self.last_error = None
        return self.current

    def reload_if_changed(self) -> bool:
        """One poll: reload when any file changed. Returns True when a new policy serves."""
        fp = fingerprint(self._dir)
        stale = getattr(self._engine, "stale", False)
        if fp == self._fingerprint and self.current is not None and not stale:
            return False
        # Debounce: an editor may still be writing. Load only once the files
        # have stopped changing, so a half-written file is never served.
        time.sleep(self._settle_s)
        if fingerprint(self._dir) != fp:
            return False
        try:
            old = self.current.revision if self.current else None
            served = self.load()
        except PolicyError as err:
            self._fingerprint = fp  # do not retry the same broken files every poll
            self.last_error = str(err)
            log.error(
                "policy reload failed, still serving %s: %s", self.current.revision if self.current else "nothing", err
            )
            if self._metrics:
                self._metrics.reloads.labels(result="error").inc()
                self._metrics.policy_error.set(1)
            return False
        self.reloads += 1
        if self._metrics:
            self._metrics.reloads.labels(result="ok").inc()
            self._metrics.policy_error.set(0)
        if served.revision != old:
            log.info("policy reloaded: %s -> %s", old, served.revision)
        return True

    def watch(self, interval_s: float) -> threading.Thread | None:
        """Polls for edits in a daemon thread (a greenlet under gevent's monkey-patching)."""
        if interval_s <= 0:
            return None

        def loop():
            while True:
                time.sleep(interval_s)
                try:
                    self.reload_if_changed()
                except Exception:  # noqa: BLE001 - the watcher must outlive any surprise
                    log.exception("policy watcher error")

        thread = threading.Thread(target=loop, name="policy-watcher", daemon=True)
        thread.start()
        return thread
