"""Evaluate an input on the loaded policy, or on a draft that is never loaded.

Built on the Engine interface (pdp/engines/base.py): compile() a bundle,
evaluate() it. A draft is the loaded bundle with some modules replaced or
added, compiled to its own handle; the served policy is not touched. The OPA
engine's compile() pushes to the OPA server (it would replace the served
policy), so drafts are compiled by the in-process wasm engine then.

Every evaluation also runs on the other engine: on OPA (opa_side.py: the
serving OPA server with PDP_ENGINE=opa, else `opa eval` with OPA_BINARY) when
the PDP decides with wasm, and on wasm when it decides with OPA; both
decisions and timings are returned, whether they agree, and the rules that
fired as OPA evaluated them (opa_side.py says how, and what that means).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time

from ..decision import from_policy
from ..engines.base import EngineError
from ..policy.bundle import PolicyBundle
from ..policy.errors import PolicyError
from .opa_side import RULES_METHOD

log = logging.getLogger("lucid.pdp.playground")
MAX_DRAFT_MODULES = 20
MAX_MODULE_BYTES = 256 * 1024


class PlaygroundError(ValueError):
    """Bad playground input; the message is safe to show (400)."""


def samples(now_ns: int) -> dict:
    """Inputs to pick from, shaped as the Decider builds them (pdp/policy_input.py)."""

    def request(method, path):
        return {
            "method": method,
            "path": path,
            "parsed_path": [p for p in path.split("/") if p],
            "query": {},
            "headers": {},
            "host": "gateway.local",
            "scheme": "https",
            "client_ip": "203.0.113.7",
        }

    anonymous = {"authenticated": False, "roles": []}
    user = {"authenticated": True, "sub": "alice", "roles": ["user"], "plan": "free", "mfa": False}
    admin = {"authenticated": True, "sub": "root", "roles": ["admin"], "plan": "enterprise", "mfa": True}
    return {
        "anonymous GET /api/v1/meta/health": {
            "request": request("GET", "/api/v1/meta/health"),
            "subject": anonymous,
            "now_ns": now_ns,
        },
        "user GET /api/v1/sessions": {"request": request("GET", "/api/v1/sessions"), "subject": user, "now_ns": now_ns},
        "admin POST /api/v1/admin/users": {
            "request": request("POST", "/api/v1/admin/users"),
            "subject": admin,
            "now_ns": now_ns,
        },
    }


def replay_input(entry: dict, now_ns: int) -> dict:
    """A decision-log entry's input, credentials already masked by the log."""
    logged = entry.get("input") or {}
    return {
        "request": logged.get("request"),
        "subject": logged.get("subject") or {"authenticated": False, "roles": []},
        "now_ns": now_ns,
    }


class Playground:
    """Evaluates on the embedded engine (wasm) and on OPA side by side (opa_side.py says which OPA)."""

    def __init__(self, policies, engine, draft_engine_factory, opa_side=None):
        self._policies = policies
        self._engine = engine
        self._draft_factory = draft_engine_factory
        self._draft_engine = None
        self._opa = opa_side
        self._wasm_loaded = None  # (revision, compiled) of the loaded policy on wasm, when the engine is opa

    def _draft_engine_for(self):
        if self._engine.name != "opa":
            return self._engine
        if self._draft_engine is None:
            self._draft_engine = self._draft_factory()
        return self._draft_engine

    def evaluate(self, input_doc, draft_modules: dict | None = None) -> dict:
        if not isinstance(input_doc, dict):
            raise PlaygroundError("input must be a JSON object (the policy's `input`)")
        served = self._policies.current
        if served is None:
            raise PlaygroundError("no policy is loaded")
        engine, compiled, revision, compile_ms, bundle = (
            self._engine,
            served.compiled,
            served.revision,
            None,
            served.bundle,
        )
        if draft_modules:
            engine = self._draft_engine_for()
            bundle = self._draft_bundle(served.bundle, draft_modules)
            started = time.perf_counter()
            try:
                compiled = engine.compile(bundle)
            except (PolicyError, EngineError) as err:
                return {
                    "ok": False,
                    "stage": "compile",
                    "error": str(err),
                    "engine": engine.name,
                    "revision": bundle.revision,
                }
            compile_ms = round((time.perf_counter() - started) * 1000, 3)
            revision = bundle.revision
        primary = _run_engine(engine, compiled, input_doc)
        if not primary["ok"]:
            return {
                "ok": False,
                "stage": "evaluate",
                "error": primary["error"],
                "engine": engine.name,
                "revision": revision,
            }
        engines = {engine.name: primary}
        if "wasm" not in engines:
            engines["wasm"] = self._on_wasm(bundle, input_doc, bool(draft_modules))
        opa = self._on_opa(bundle, input_doc, bool(draft_modules))
        rules, not_fired = opa.pop("rules", None) or (None, None)
        engines["opa"] = opa if engine.name != "opa" else {**opa, "round_trip_ms": primary["eval_ms"]}
        agree = None
        if engines["wasm"].get("ok") and engines["opa"].get("ok"):
            agree = _same(engines["wasm"]["decision"], engines["opa"]["decision"])
        return {
            "ok": True,
            "engine": engine.name,
            "revision": revision,
            "draft": bool(draft_modules),
            "eval_ms": primary["eval_ms"],
            "compile_ms": compile_ms,
            "decision": primary["decision"],
            "result": primary["result"],
            "engines": {name: engines[name] for name in ("wasm", "opa")},
            "agree": agree,
            "rules": rules,
            "rules_not_fired": not_fired,
            "rules_note": (
                f"{RULES_METHOD} (by {opa.get('via')})"
                if rules is not None
                else f"no rules: OPA did not evaluate ({opa.get('error', 'not available')})"
            ),
        }

    def _on_wasm(self, bundle, input_doc, draft: bool) -> dict:
        """The embedded engine beside a PDP on the opa engine (its compiled loaded policy cached per revision)."""
        wasm = self._draft_engine_for()
        cached = self._wasm_loaded
        try:
            if not draft and cached is not None and cached[0] == bundle.revision:
                compiled = cached[1]
            else:
                compiled = wasm.compile(bundle)
                if not draft:
                    self._wasm_loaded = (bundle.revision, compiled)
        except (PolicyError, EngineError) as err:
            return {"ok": False, "engine": "wasm", "stage": "compile", "error": str(err)}
        return _run_engine(wasm, compiled, input_doc)

    def _on_opa(self, bundle, input_doc, draft: bool) -> dict:
        if self._opa is None:
            return {"ok": False, "engine": "opa", "available": False, "error": "OPA is not set up for the playground"}
        answer = self._opa.evaluate(bundle, input_doc, draft)
        if answer.get("ok"):
            answer["decision"] = _decision_view(from_policy(answer["result"]))
        return answer

    @staticmethod
    def _draft_bundle(bundle: PolicyBundle, draft_modules) -> PolicyBundle:
        if not isinstance(draft_modules, dict) or len(draft_modules) > MAX_DRAFT_MODULES:
            raise PlaygroundError(f"draft must be an object of at most {MAX_DRAFT_MODULES} modules (path -> source)")
        digest = hashlib.sha256(bundle.revision.encode())
        for path, source in sorted(draft_modules.items()):
            if (
                not isinstance(path, str)
                or not path.endswith(".rego")
                or ".." in path
                or path.startswith("/")
                or len(path) > 200
            ):
                raise PlaygroundError("draft module paths are relative .rego paths, e.g. gateway/decision.rego")
            if not isinstance(source, str) or len(source.encode()) > MAX_MODULE_BYTES:
                raise PlaygroundError(f"draft module {path} must be Rego source of at most {MAX_MODULE_BYTES} bytes")
            digest.update(path.encode() + b"\0" + source.encode() + b"\0")
        return dataclasses.replace(
            bundle,
            modules={**bundle.modules, **draft_modules},
            test_modules={},
            revision="draft:" + digest.hexdigest()[:16],
        )


def _decision_view(decision) -> dict:
    return {
        "allow": decision.allow,
        "status": decision.status,
        "reason": decision.reason,
        "headers": decision.headers,
        "response_headers": decision.response_headers,
        "quotas": decision.quotas,
        "cache_ttl_s": decision.cache_ttl_s,
    }


def _same(a: dict, b: dict) -> bool:
    keys = ("allow", "status", "reason", "headers", "response_headers", "quotas")
    return all(a.get(k) == b.get(k) for k in keys)


def _run_engine(engine, compiled, input_doc) -> dict:
    """One evaluation, timed in-process (wall clock of the evaluate() call)."""
    via = {"wasm": "embedded wasm engine (in-process)", "opa": "OPA server (PDP_ENGINE=opa), round trip"}
    started = time.perf_counter()
    try:
        doc = engine.evaluate(compiled, input_doc)
    except EngineError as err:
        return {"ok": False, "engine": engine.name, "stage": "evaluate", "error": str(err)}
    except Exception as err:  # noqa: BLE001 - a pasted input must never take the page down
        log.warning("playground evaluation failed: %s", err.__class__.__name__)
        return {
            "ok": False,
            "engine": engine.name,
            "stage": "evaluate",
            "error": f"evaluation failed ({err.__class__.__name__})",
        }
    eval_ms = round((time.perf_counter() - started) * 1000, 3)
    return {
        "ok": True,
        "engine": engine.name,
        "via": via.get(engine.name, engine.name),
        "eval_ms": eval_ms,
        "timing": "wall clock of one evaluation in the PDP",
        "decision": _decision_view(from_policy(doc)),
        "result": doc,
    }
