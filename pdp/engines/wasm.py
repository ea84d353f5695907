"""The wasm engine: the policy compiled by OPA itself (`opa build -t wasm`) and
run in-process by wasmtime.

Why a thin ABI layer of our own (wasm_abi.py, ~200 lines) and not opa-py-wasm
1.2.1: that wrapper is careful code, but it pins wasmtime to one major
(46.x), runs an epoch-ticker thread per policy that under gevent's
monkey-patching becomes a greenlet that cannot preempt Wasm (so its deadline
does nothing here), and goes through wasmtime-py's generic Func.__call__,
which costs more than the evaluation itself (~100 us of type checks for
opa_eval's seven i32s). We need two things it does not give: refusing at
load, with file:line, any builtin the host does not implement, and telling an
input the module refuses (400) from a policy that fails (503).

One compiled module per worker; instances (one heap each) are pooled, and an
instance serves one evaluation at a time: it is taken from the pool for the
call and given back after, so two greenlets or threads never share one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict

from servicekit import json_codec

from ..policy.analysis import called_functions
from ..policy.bundle import PolicyBundle
from ..policy.errors import PolicyError
from .base import DECISION_PATH, EngineError, InvalidInput
from .host_builtins import HOST_BUILTINS
from .opa_build import build_wasm, find_opa
from .wasm_abi import WasmAbort, WasmInstance, WasmModule

log = logging.getLogger("lucid.pdp.engine")
_MAX_IDLE_INSTANCES = 16
# Compiled policies by revision: `pdp serve` compiles before gunicorn forks,
# so workers start from the master's copy instead of running opa build again.
_BUILT: OrderedDict[tuple, bytes] = OrderedDict()
_BUILT_MAX = 4


class InstancePool:
    """Idle instances of one module; an instance is lent to one evaluation at a time."""

    def __init__(self, module: WasmModule, data_json: bytes, first: WasmInstance):
        self._module = module
        self._data_json = data_json
        self._idle = [first]
        self._lock = threading.Lock()
        self.created = 1

    def take(self) -> WasmInstance:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.created += 1
        return self._module.instance(self._data_json)

    def give_back(self, instance: WasmInstance) -> None:
        with self._lock:
            if len(self._idle) < _MAX_IDLE_INSTANCES:
                self._idle.append(instance)


class CompiledWasm:
    def __init__(self, pool: InstancePool, entrypoint_id: int, probe: WasmInstance):
        self.pool = pool
        self.entrypoint_id = entrypoint_id
        self._probe = probe  # only for telling bad input from a failing policy


class WasmEngine:
    name = "wasm"
    memoizable = True  # the policy and its data are all in this process

    def __init__(self, opa_binary: str = "opa"):
        self._opa_binary = opa_binary

    def compile(self, bundle: PolicyBundle) -> CompiledWasm:
        wasm = bundle.wasm if bundle.wasm is not None else self._build(bundle)
        try:
            module = WasmModule(wasm, HOST_BUILTINS)
            data_json = json.dumps(bundle.data, ensure_ascii=False, separators=(",", ":")).encode()
            first = module.instance(data_json)
        except WasmAbort as err:
            raise PolicyError(f"the compiled policy does not load: {err}") from None
        if DECISION_PATH not in first.entrypoints:
            raise PolicyError(f"the bundle has no entrypoint {DECISION_PATH} (build with -e {DECISION_PATH})")
        missing = sorted(set(first.builtin_ids) - set(HOST_BUILTINS))
        if missing:
            raise PolicyError(_unsupported(missing, bundle.modules))
        return CompiledWasm(
            InstancePool(module, data_json, first), first.entrypoints[DECISION_PATH], module.instance(data_json)
        )

    def _build(self, bundle: PolicyBundle) -> bytes:
        opa = find_opa(self._opa_binary)
        key = (opa, tuple(sorted(bundle.modules.items())))
        if key in _BUILT:
            _BUILT.move_to_end(key)
            return _BUILT[key]
        wasm = build_wasm(opa, bundle.modules, DECISION_PATH)
        _BUILT[key] = wasm
        while len(_BUILT) > _BUILT_MAX:
            _BUILT.popitem(last=False)
        return wasm

    def evaluate(self, compiled: CompiledWasm, input_doc: dict):
        raw = encode_input(input_doc)
        instance = compiled.pool.take()
        try:
            out = instance.evaluate(compiled.entrypoint_id, raw)
        except WasmAbort as err:
            # The instance's heap is in an unknown state: drop it.
            if not _module_parses(compiled, raw):
                raise InvalidInput(f"the policy engine refused the input: {err}") from None
            raise EngineError(f"policy evaluation aborted: {err}") from None
        compiled.pool.give_back(instance)
        results = json_codec.loads(out)
        if not results:
            return None
        return results[0].get("result")

    def ready(self) -> bool:
        return True


def encode_input(input_doc) -> bytes:
    """UTF-8 JSON for the module; InvalidInput for what JSON cannot carry
    (a lone surrogate, NaN), which OPA would otherwise refuse or alter."""
    try:
        return json.dumps(input_doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("input holds a lone surrogate (not valid Unicode)") from None
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"input is not JSON: {err}") from None


def _module_parses(compiled: CompiledWasm, raw: bytes) -> bool:
    """Whether the module's own JSON parser takes this input (then the policy failed, not the input)."""
    probe = compiled._probe
    try:
        with compiled.pool._lock:
            return probe.parses(raw)
    except WasmAbort:
        compiled._probe = compiled.pool._module.instance(compiled.pool._data_json)
        return False


def _unsupported(names: list[str], modules: dict[str, str]) -> str:
    where = {}
    for call in called_functions(modules):
        where.setdefault(call.name, call.location)
    found = [f"{where.get(n, '?')}: unsupported builtin {n}() in the wasm engine" for n in names]
    more = f" (+{len(found) - 5} more)" if len(found) > 5 else ""
    return "; ".join(found[:5]) + more + ". The host implements: " + ", ".join(sorted(HOST_BUILTINS))
