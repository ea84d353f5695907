"""The embedded engine: rego-cpp through regopy, compiled once per policy load.

`Interpreter.query()` recompiles on every call (about 3 ms); `build()` once
and `query_bundle_entrypoint()` per request costs about 0.2 ms.
"""
from __future__ import annotations

import dataclasses
import json
import threading

import regopy

from ..policy.analysis import called_functions
from ..policy.bundle import PolicyBundle
from ..policy.errors import PolicyError, from_rego_cpp
from .base import DECISION_PATH, EngineError

# rego-cpp prints compile errors itself; we report them once, with file:line.
regopy.set_default_log_level("None")


@dataclasses.dataclass
class Compiled:
    interpreter: regopy.Interpreter
    bundle: regopy.Bundle
    # One interpreter holds one input at a time; greenlets never switch inside
    # evaluate(), but real threads (tests, CLI) may share it.
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def unsupported_builtins(interpreter: regopy.Interpreter, modules: dict[str, str]) -> list[str]:
    """file:line:col of every call to a function that is neither a builtin nor a rule."""
    seen = {}
    for call in called_functions(modules):
        if call.name not in seen:
            seen[call.name] = interpreter.is_builtin(call.name)
    return [f"{c.location}: unsupported builtin {c.name}() in the embedded engine"
            for c in called_functions(modules) if not seen[c.name]]


def new_interpreter(bundle: PolicyBundle, modules: dict[str, str]) -> regopy.Interpreter:
    """An interpreter holding the given modules and the bundle's data; raises PolicyError."""
    interp = regopy.Interpreter()
    bad = unsupported_builtins(interp, modules)
    if bad:
        raise PolicyError("; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""))
    try:
        for name, source in modules.items():
            interp.add_module(name, source)
        interp.add_data_json(json.dumps(bundle.data))
    except regopy.RegoError as err:
        raise from_rego_cpp(str(err), modules) from None
    return interp


class EmbeddedEngine:
    name = "embedded"
    memoizable = True   # the policy and data are all in this process

    def compile(self, bundle: PolicyBundle) -> Compiled:
        interp = new_interpreter(bundle, bundle.modules)
        try:
            built = interp.build(None, [DECISION_PATH])
        except regopy.RegoError as err:
            raise from_rego_cpp(str(err), bundle.modules) from None
        if not built.ok():
            raise PolicyError("the policy bundle did not compile")
        return Compiled(interp, built)

    def evaluate(self, compiled: Compiled, input_doc: dict):
        with compiled.lock:
            try:
                compiled.interpreter.set_input(regopy.Input(input_doc))
                out = compiled.interpreter.query_bundle_entrypoint(compiled.bundle, DECISION_PATH)
            except regopy.RegoError as err:
                raise EngineError(str(err).strip().splitlines()[0] if str(err).strip() else "evaluation failed") from None
            # On a failed output, regopy 1.5.2 segfaults in str(), node() and
            # expressions(): read only ok() and .results.
            if not out.ok():
                raise EngineError("evaluation failed in the embedded engine")
            results = out.results
        if not results or not results[0].expressions:
            return None
        return results[0].expressions[0]

    def ready(self) -> bool:
        return True
