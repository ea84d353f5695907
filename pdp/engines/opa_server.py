"""The opa engine: a real OPA server (a sidecar in Kubernetes) over its REST API.

Through opa-python-client, every policy load pushes the data (PUT /v1/data)
and the modules (PUT /v1/policies), so OPA always serves the revision the PDP
reports. With OPA_PUSH_POLICIES=false, OPA loads a bundle itself instead.

Decisions do not go through opa-python-client: its requests session held the
engine to about 827 decisions/s and blocks a gevent worker's hub on its
connection pool. They use a pooled geventhttpclient (keep-alive connections,
one per concurrent decision up to the pool size) posting to /v1/data.
"""

from __future__ import annotations

import dataclasses
import json
import re
from urllib.parse import urlsplit

import requests
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPParseError
from opa_client import errors as opa_errors
from opa_client.opa import OpaClient

from ..policy.bundle import PolicyBundle
from ..policy.errors import PolicyError
from .base import EngineError

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_POLICY_ID_PREFIX = "lucid_"
_DECISION_PATH = "/v1/data/gateway/decision"
# Connections kept to OPA per PDP worker: as many decisions in flight at once.
_DECISION_POOL = 32
_OPA_FAILURES = (
    requests.RequestException,
    opa_errors.ConnectionsError,
    opa_errors.RegoParseError,
    opa_errors.PolicyNotFoundError,
    opa_errors.DeletePolicyError,
    opa_errors.TypeException,
)


@dataclasses.dataclass
class Pushed:
    revision: str


def _client(url: str, timeout_s: float) -> OpaClient:
    parts = urlsplit(url)
    return OpaClient(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 8181,
        ssl=parts.scheme == "https",
        timeout=timeout_s,
        retries=0,
    )


class OpaServerEngine:
    name = "opa"
    # OPA's data may change behind our back (bundles, PUT /v1/data), and a
    # cached answer would hide an OPA outage: always ask.
    memoizable = False

    def __init__(self, url: str, timeout_s: float = 0.2, push: bool = True, pool_size: int = _DECISION_POOL):
        self._query = _client(url, timeout_s)
        parts = urlsplit(url)
        self._decisions = HTTPClient(
            parts.hostname or "127.0.0.1",
            parts.port or 8181,
            ssl=parts.scheme == "https",
            concurrency=pool_size,
            connection_timeout=timeout_s,
            network_timeout=timeout_s,
        )
        self._timeout_s = timeout_s
        # Pushing a bundle may take longer than one decision is allowed to.
        self._admin = _client(url, max(timeout_s, 10.0))
        self._push = push
        # Set when OPA answers "undefined": our decision always has a default, so
        # OPA lost our policies (e.g. the sidecar restarted); the watcher re-pushes.
        self.stale = False

    def compile(self, bundle: PolicyBundle) -> Pushed:
        if not self._push:
            return Pushed(bundle.revision)
        wanted = {_POLICY_ID_PREFIX + _ID_UNSAFE.sub("_", name): name for name in bundle.modules}
        try:
            for key, value in bundle.data.items():
                if not isinstance(value, dict):
                    raise PolicyError(f"top-level data {key!r} must be an object for the opa engine")
                self._admin.update_or_create_data(value, key)
            stale = {pid for pid in self._admin.get_policies_list() if pid.startswith(_POLICY_ID_PREFIX)} - set(wanted)
            try:
                self._push_modules(bundle, wanted)
            except PolicyError:
                if not stale:
                    raise
                # The new modules may clash with old ones (same rule, other kind):
                # clear the old ones first, then push again.
                self._delete_modules(stale)
                stale = set()
                self._push_modules(bundle, wanted)
            self._delete_modules(stale)
        except PolicyError:
            raise
        except _OPA_FAILURES as err:
            raise PolicyError(
                f"OPA at {self._admin.root_url} refused or unreachable: {err.__class__.__name__}"
            ) from None
        self.stale = False
        return Pushed(bundle.revision)

    def _push_modules(self, bundle: PolicyBundle, wanted: dict) -> None:
        """PUTs every module. OPA compiles each PUT against what it already has, so a
        module calling a function of one not yet pushed is refused: retry those
        until a pass makes no progress (dependency order without parsing Rego)."""
        pending = dict(wanted)
        while pending:
            failed = {}
            for policy_id, name in pending.items():
                try:
                    self._admin.update_policy_from_string(bundle.modules[name], policy_id, rego_compat=False)
                except opa_errors.RegoParseError as err:
                    failed[policy_id] = (name, err)
            if len(failed) == len(pending):
                name, err = next(iter(failed.values()))
                raise PolicyError(_describe(err), name)
            pending = {pid: name for pid, (name, _) in failed.items()}

    def _delete_modules(self, policy_ids: set) -> None:
        """Deletes modules; OPA refuses to delete one that a remaining module still
        calls, so retry until a pass makes no progress, like _push_modules."""
        pending = set(policy_ids)
        while pending:
            failed = set()
            for policy_id in pending:
                try:
                    self._admin.delete_policy(policy_id)
                except opa_errors.DeletePolicyError as err:
                    if getattr(err, "expression", None) != "resource_not_found":
                        failed.add(policy_id)
            if failed == pending:
                raise PolicyError(f"OPA refused to delete old modules: {', '.join(sorted(failed))}")
            pending = failed

    def evaluate(self, compiled: Pushed, input_doc: dict):
        body = json.dumps({"input": input_doc}, separators=(",", ":")).encode()
        try:
            answer = self._decisions.request("POST", _DECISION_PATH, body, {"Content-Type": "application/json"})
            try:
                status, raw = answer.status_code, answer.read()
            finally:
                answer.release()
        except (OSError, HTTPParseError) as err:  # socket errors and timeouts are OSError
            raise EngineError(f"OPA query failed: {err.__class__.__name__}") from None
        if status != 200:
            raise EngineError(f"OPA query failed: status {status}")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise EngineError("OPA answered with invalid JSON") from None
        if not isinstance(answer, dict) or "result" not in answer:
            self.stale = self._push
            raise EngineError("OPA has no data.gateway.decision (policies not loaded)")
        return answer["result"]

    def query(self, path: str, input_doc: dict, metrics: bool = False) -> dict:
        """OPA's whole answer to POST /v1/data/<path> (the playground: result and, with
        metrics, OPA's own timers). Raises EngineError."""
        body = json.dumps({"input": input_doc}, separators=(",", ":")).encode()
        url = "/v1/data" + ("/" + path.strip("/") if path.strip("/") else "") + ("?metrics=true" if metrics else "")
        try:
            answer = self._decisions.request("POST", url, body, {"Content-Type": "application/json"})
            try:
                status, raw = answer.status_code, answer.read()
            finally:
                answer.release()
        except (OSError, HTTPParseError) as err:
            raise EngineError(f"OPA query failed: {err.__class__.__name__}") from None
        if status != 200:
            raise EngineError(f"OPA query failed: status {status}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise EngineError("OPA answered with invalid JSON") from None
        if not isinstance(doc, dict):
            raise EngineError("OPA answered with something other than an object")
        return doc

    def ready(self) -> bool:
        return self._query.check_health()


def _describe(err) -> str:
    errs = getattr(err, "errors", None) or []
    if errs and isinstance(errs[0], dict):
        loc = errs[0].get("location") or {}
        return f"line {loc.get('row', '?')}: {errs[0].get('message', '')}"
    return str(err)[:300]
