"""OPA beside the embedded (wasm) engine in the playground, and the rules that fired.

Which OPA answers:
- with PDP_ENGINE=opa, for the loaded policy: the OPA server the PDP decides
  with (OPA_URL), over its REST API with ?metrics=true;
- otherwise (the wasm engine, or a draft, which must never be pushed to the
  serving OPA): the OPA binary (OPA_BINARY, the one the wasm engine compiles
  with) runs `opa eval` on exactly the modules and data the PDP read, or the
  draft. No server is started; each evaluation is a fresh, short-lived OPA.
- neither (no binary, not on the opa engine): the page says OPA is not there.

Timing: OPA's own `timer_rego_query_eval_ns`, evaluation only (no process
start, parsing or compiling), beside the wasm engine's in-process wall clock
of one evaluate() call. Both are one evaluation of one input: a hint, not a
benchmark (make bench-pdp measures the engines).

Rules that fired: OPA evaluates the whole `data` document with the input, so
every rule of every package the modules declare is evaluated; a rule whose
value is defined appears in its package's document (functions never do). A
rule *fired* when its value is true, a non-empty set, array or object, or any
other defined value (a string, a number, the decision object); it did *not
fire* when it is false or empty (a `default` or an empty partial set). Rules
that are undefined for the input (no default, no body held) are absent and are
not listed. This is what each named rule evaluated to, from OPA's evaluation;
it is not a trace of which rules the decision's own evaluation needed (OPA's
--explain gives that, too long and too engine-internal to show here). The wasm
engine cannot say this itself: a compiled policy only exposes its entrypoints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from ..policy.analysis import strip_comments

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)[ \t]*$", re.M)
_EVAL_TIMEOUT_S = 15
_NICE = 10
_MAX_ERROR = 600
RULES_METHOD = (
    "each named rule of the policy's packages, evaluated by OPA for this input: fired = true or a "
    "non-empty value; not fired = false or empty; undefined rules are not listed"
)


def packages(modules: dict) -> list[str]:
    """The packages the modules declare (`package a.b` lines)."""
    found = set()
    for source in modules.values():
        match = _PACKAGE.search(strip_comments(source))
        if match:
            found.add(match.group(1))
    return sorted(found)


def _at(doc, path: list[str]):
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _fired(value) -> bool:
    return value is not False and value is not None and not (isinstance(value, (list, dict, str)) and not value)


def rules_from_data(data_doc, modules: dict, base_data: dict) -> tuple[list[str], list[str]]:
    """(fired, not fired) rule names, `package.rule`, from the evaluated `data` document."""
    pkgs = packages(modules)
    fired, not_fired = [], []
    for pkg in pkgs:
        path = pkg.split(".")
        doc = _at(data_doc, path)
        if not isinstance(doc, dict):
            continue
        base = _at(base_data, path)
        children = {p.split(".")[len(path)] for p in pkgs if p.startswith(pkg + ".")}
        for name, value in sorted(doc.items()):
            if name in children or (isinstance(base, dict) and name in base):
                continue  # a sub-package or plain data, not a rule
            (fired if _fired(value) else not_fired).append(f"{pkg}.{name}")
    return fired, not_fired


class OpaSide:
    def __init__(self, engine, opa_binary: str):
        self._engine = engine  # the serving engine (OpaServerEngine when PDP_ENGINE=opa)
        self._opa_binary = opa_binary

    def _binary(self) -> str | None:
        from ..engines.opa_build import find_opa
        from ..policy.errors import PolicyError

        try:
            return find_opa(self._opa_binary)
        except PolicyError:
            return None

    def available(self) -> str | None:
        """How OPA would answer, or None when no OPA can."""
        if self._engine.name == "opa":
            return "server"
        return "eval" if self._binary() else None

    def evaluate(self, bundle, input_doc: dict, draft: bool) -> dict:
        """{"ok", "engine": "opa", "via", "eval_ms", "timing", "result", "rules": (fired, not fired) | None}."""
        if self._engine.name == "opa" and not draft and hasattr(self._engine, "query"):
            return self._on_server(bundle, input_doc)
        opa = self._binary()
        if opa is None:
            return {
                "ok": False,
                "engine": "opa",
                "available": False,
                "error": f"no OPA: PDP_ENGINE is not opa and OPA_BINARY ({self._opa_binary}) is not found",
            }
        if not bundle.modules:
            return {
                "ok": False,
                "engine": "opa",
                "available": False,
                "error": "the loaded policy is a prebuilt bundle without its Rego sources",
            }
        return self._with_eval(opa, bundle, input_doc)

    def _on_server(self, bundle, input_doc) -> dict:
        via = "OPA server (PDP_ENGINE=opa, OPA_URL)"
        from ..engines.base import EngineError

        try:
            answer = self._engine.query("gateway/decision", input_doc, metrics=True)
            everything = self._engine.query("", input_doc)
        except EngineError as err:
            return {"ok": False, "engine": "opa", "via": via, "stage": "evaluate", "error": str(err)}
        eval_ns = (answer.get("metrics") or {}).get("timer_rego_query_eval_ns")
        return {
            "ok": True,
            "engine": "opa",
            "via": via,
            "result": answer.get("result"),
            "eval_ms": round(eval_ns / 1e6, 3) if isinstance(eval_ns, (int, float)) else None,
            "timing": "OPA's timer_rego_query_eval_ns",
            "rules": rules_from_data(everything.get("result"), bundle.modules, bundle.data),
        }

    def _with_eval(self, opa: str, bundle, input_doc) -> dict:
        via = "opa eval (OPA_BINARY)"
        with tempfile.TemporaryDirectory(prefix="pdp-playground-") as tmp:
            src = Path(tmp, "src")
            src.mkdir()
            for name, text in bundle.modules.items():
                path = src / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            if bundle.data:
                (src / "data.json").write_text(json.dumps(bundle.data), encoding="utf-8")
            input_path = Path(tmp, "input.json")
            input_path.write_text(json.dumps(input_doc), encoding="utf-8")
            common = [opa, "eval", "--format", "json", "--data", str(src), "--input", str(input_path)]
            try:
                started = time.perf_counter()
                decision = _run(common + ["--metrics", "data.gateway.decision"], cwd=src)
                wall_ms = (time.perf_counter() - started) * 1000
                everything = _run(common + ["data"], cwd=src)
            except _EvalFailed as err:
                return {"ok": False, "engine": "opa", "via": via, "stage": err.stage, "error": str(err)}
        results = decision.get("result") or []
        value = results[0]["expressions"][0]["value"] if results else None
        data_results = everything.get("result") or []
        data_doc = data_results[0]["expressions"][0]["value"] if data_results else {}
        eval_ns = (decision.get("metrics") or {}).get("timer_rego_query_eval_ns")
        return {
            "ok": True,
            "engine": "opa",
            "via": via,
            "result": value,
            "eval_ms": round(eval_ns / 1e6, 3) if isinstance(eval_ns, (int, float)) else None,
            "timing": "OPA's timer_rego_query_eval_ns",
            "process_ms": round(wall_ms, 1),
            "rules": rules_from_data(data_doc, bundle.modules, bundle.data),
        }


class _EvalFailed(Exception):
    def __init__(self, message: str, stage: str):
        super().__init__(message[:_MAX_ERROR])
        self.stage = stage


def _lower_priority() -> None:
    os.nice(_NICE)


def _run(argv: list[str], cwd: Path) -> dict:
    try:
        # Niced: compiling the policy takes OPA a few hundred ms of CPU, which must not
        # be taken from the decisions this PDP serves meanwhile (REDIS_TIMEOUT_MS is 20 ms).
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=_EVAL_TIMEOUT_S, preexec_fn=_lower_priority
        )
    except subprocess.TimeoutExpired:
        raise _EvalFailed(f"opa eval took longer than {_EVAL_TIMEOUT_S} s", "evaluate") from None
    except OSError as err:
        raise _EvalFailed(f"opa eval failed to run: {err.__class__.__name__}", "evaluate") from None
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise _EvalFailed(f"opa eval said: {(done.stderr or done.stdout).strip()}", "evaluate") from None
    if done.returncode != 0 or doc.get("errors"):
        errors = doc.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        where = first.get("location") or {}
        stage = (
            "compile"
            if first.get("code")
            in (
                "rego_parse_error",
                "rego_compile_error",
                "rego_type_error",
                "rego_unsafe_var_error",
                "rego_recursion_error",
            )
            else "evaluate"
        )
        file = str(where.get("file", "")).removeprefix(str(cwd) + "/")
        place = f"{file}:{where.get('row', '?')}: " if where else ""
        raise _EvalFailed(place + str(first.get("message") or (done.stderr or "opa eval failed").strip()), stage)
    return doc
