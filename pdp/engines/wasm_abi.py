"""A thin layer on wasmtime for OPA's Wasm ABI (ABI 1.2+: the one-shot opa_eval).

The ABI is OPA's own, documented in its "WebAssembly" pages: the module
imports `env.memory`, `env.opa_abort` and `env.opa_builtin0..4`; it exports
`opa_malloc`, `opa_json_parse`, `opa_json_dump`, `opa_heap_ptr_get`,
`builtins`, `entrypoints` and `opa_eval`. Like OPA's JavaScript SDK, the data
document is parsed once per instance, and every evaluation writes its input
just above the data and hands that address to opa_eval as the heap start, so
the heap never grows across evaluations.

An instance is single-use at a time (it holds one heap); WasmModule.instance()
makes a new one and the engine pools them. After a trap (an abort, a builtin
error) an instance is discarded: its heap is in an unknown state.
"""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import byref
from typing import Callable

import wasmtime

try:  # wasmtime-py's generic Func.__call__ costs ~100 us in type checks for 7 i32s.
    from wasmtime import _ffi as _wasm_ffi
    from wasmtime._func import enter_wasm as _enter_wasm
except ImportError:  # pragma: no cover - a wasmtime without these internals
    _wasm_ffi = None

_PAGE = 65536
_libc = ctypes.CDLL(None)
_libc.strnlen.restype = ctypes.c_size_t
_libc.strnlen.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_I32 = wasmtime.ValType.i32()
_engines: dict[int, wasmtime.Engine] = {}


def _engine() -> wasmtime.Engine:
    """One wasmtime engine per process. Wasmtime is thread-safe but not fork-safe:
    gunicorn forks workers after the master compiled the policy (pdp serve's
    startup check), so each process makes its own engine, and compiles on the
    calling thread: a parallel compile waits forever in a child for the
    master's thread pool, whose threads fork did not copy."""
    pid = os.getpid()
    engine = _engines.get(pid)
    if engine is None:
        _engines.clear()
        config = wasmtime.Config()
        config.parallel_compilation = False
        engine = _engines[pid] = wasmtime.Engine(config)
    return engine


class WasmAbort(Exception):
    """The module called opa_abort or trapped; the message says why."""


class HostBuiltinError(Exception):
    """A host-implemented builtin was called with arguments it refuses."""


class WasmModule:
    """One compiled policy.wasm, shared by every instance of a worker."""

    def __init__(self, wasm: bytes, host_builtins: dict[str, Callable]):
        try:
            self._engine = _engine()
            self._module = wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as err:
            raise WasmAbort(f"not a Wasm module: {str(err).splitlines()[0]}") from None
        memory = [i for i in self._module.imports if i.module == "env" and i.name == "memory"]
        if not memory or not isinstance(memory[0].type, wasmtime.MemoryType):
            raise WasmAbort("not an OPA policy module: no env.memory import")
        self._memory_type = memory[0].type
        self._imports = {i.name for i in self._module.imports if i.module == "env"}
        self._host = host_builtins

    def instance(self, data_json: bytes) -> "WasmInstance":
        return WasmInstance(self, data_json)


class WasmInstance:
    def __init__(self, module: WasmModule, data_json: bytes):
        self._module = module
        self._store = store = wasmtime.Store(module._engine)
        self._memory = wasmtime.Memory(store, module._memory_type)
        self._abort_message: str | None = None
        self._builtins_by_id: dict[int, tuple[str, Callable]] = {}
        linker = wasmtime.Linker(module._engine)
        linker.define(store, "env", "memory", self._memory)
        linker.define_func("env", "opa_abort", wasmtime.FuncType([_I32], []), self._on_abort, access_caller=True)
        if "opa_println" in module._imports:
            linker.define_func("env", "opa_println", wasmtime.FuncType([_I32], []), lambda addr: None)
        for arity in range(5):
            name = f"opa_builtin{arity}"
            if name in module._imports:
                linker.define_func(
                    "env", name, wasmtime.FuncType([_I32] * (arity + 2), [_I32]), self._on_builtin, access_caller=True
                )
        try:
            self._instance = linker.instantiate(store, module._module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as err:
            raise WasmAbort(f"cannot instantiate the policy: {str(err).splitlines()[0]}") from None
        exports = self._instance.exports(store)
        major = exports["opa_wasm_abi_version"].value(store)
        minor = exports["opa_wasm_abi_minor_version"].value(store) if "opa_wasm_abi_minor_version" in exports else 0
        if major != 1 or minor < 2:
            raise WasmAbort(f"OPA Wasm ABI {major}.{minor} is not supported (needs 1.2 or later)")
        self._malloc = exports["opa_malloc"]
        self._json_parse = exports["opa_json_parse"]
        self._json_dump = exports["opa_json_dump"]
        self._eval = (
            _I32Call(store, exports["opa_eval"], 7)
            if _wasm_ffi
            else (lambda *args, _f=exports["opa_eval"]: _f(store, *args))
        )
        heap_ptr_get = exports["opa_heap_ptr_get"]
        self._heap_ptr_set = exports["opa_heap_ptr_set"]
        self.builtin_ids: dict[str, int] = self._read_value(exports["builtins"](store))
        self.entrypoints: dict[str, int] = self._read_value(exports["entrypoints"](store))
        for name, ident in self.builtin_ids.items():
            if name in module._host:
                self._builtins_by_id[ident] = (name, module._host[name])
        self._data_addr = self._parse(store, data_json)
        # Everything above this address is free once the data is parsed.
        self._input_addr = heap_ptr_get(store)

    # -- evaluation ------------------------------------------------------

    def evaluate(self, entrypoint_id: int, input_json: bytes) -> bytes:
        """The JSON result set of one evaluation, e.g. b'[{"result":...}]'. Raises WasmAbort."""
        store, memory = self._store, self._memory
        heap_ptr = self._input_addr + len(input_json)
        if heap_ptr + _PAGE > memory.data_len(store):
            self._ensure_memory(heap_ptr + _PAGE)
        # The guest may have grown (moved) its memory in the last call: take the base anew.
        base = ctypes.addressof(memory.data_ptr(store).contents)
        ctypes.memmove(base + self._input_addr, input_json, len(input_json))
        self._abort_message = None
        try:
            result_addr = self._eval(0, entrypoint_id, self._data_addr, self._input_addr, len(input_json), heap_ptr, 0)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            raise WasmAbort(self._abort_message or _first_line(err)) from None
        return self._cstring(store, result_addr)

    def parses(self, raw: bytes) -> bool:
        """Whether the module's JSON parser accepts raw (the input opa_eval would parse)."""
        store = self._store
        try:
            self._ensure_memory(self._input_addr + len(raw) + _PAGE)
            self._heap_ptr_set(store, self._input_addr)
            addr = self._malloc(store, len(raw))
            self._memory.write(store, raw, addr)
            return bool(self._json_parse(store, addr, len(raw)))
        except (wasmtime.Trap, wasmtime.WasmtimeError) as err:
            raise WasmAbort(self._abort_message or _first_line(err)) from None
        finally:
            self._heap_ptr_set(store, self._input_addr)

    # -- host imports ----------------------------------------------------

    def _on_abort(self, caller, addr: int) -> None:
        self._abort_message = self._cstring(caller, addr, limit=4096).decode("utf-8", "replace")
        raise WasmAbort(self._abort_message)

    def _on_builtin(self, caller, builtin_id: int, _ctx: int, *arg_addrs: int) -> int:
        name, fn = self._builtins_by_id.get(builtin_id, (None, None))
        if fn is None:
            # Refused at load (see WasmEngine.compile); reaching here is a bug.
            self._abort_message = f"builtin #{builtin_id} is not implemented by the host"
            raise WasmAbort(self._abort_message)
        args = [json.loads(self._cstring(caller, self._json_dump(caller, a))) for a in arg_addrs]
        try:
            result = fn(*args)
        except HostBuiltinError as err:
            self._abort_message = f"{name}: {err}"
            raise WasmAbort(self._abort_message) from None
        return self._parse(caller, json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())

    # -- memory ----------------------------------------------------------

    def _parse(self, store, raw: bytes) -> int:
        addr = self._malloc(store, len(raw))
        self._memory.write(store, raw, addr)
        value = self._json_parse(store, addr, len(raw))
        if not value:
            raise WasmAbort("the module refused a JSON document")
        return value

    def _read_value(self, value_addr: int):
        return json.loads(self._cstring(self._store, self._json_dump(self._store, value_addr)))

    def _cstring(self, store, addr: int, limit: int | None = None) -> bytes:
        size = self._memory.data_len(store)
        if not 0 < addr < size:
            raise WasmAbort("the module returned an address outside its memory")
        base = ctypes.addressof(self._memory.data_ptr(store).contents)
        end = size if limit is None else min(size, addr + limit)
        # strnlen: bounded by the memory's end, and no copy of the rest of it.
        return ctypes.string_at(base + addr, _libc.strnlen(base + addr, end - addr))

    def _ensure_memory(self, needed: int) -> None:
        size = self._memory.data_len(self._store)
        if needed > size:
            self._memory.grow(self._store, (needed - size + _PAGE - 1) // _PAGE)


class _I32Call:
    """Calls an exported (i32 x n) -> i32 function through wasmtime's C API with
    preallocated argument slots: the same call as Func.__call__ without its
    per-call type lookups (tests/pdp/test_wasm_engine.py compares the two)."""

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, arity: int):
        self._store = store
        self._func = byref(func._func)
        self._arity = arity
        self._params = (_wasm_ffi.wasmtime_val_t * arity)()
        for slot in self._params:
            slot.kind = _wasm_ffi.WASMTIME_I32.value
        self._results = (_wasm_ffi.wasmtime_val_t * 1)()

    def __call__(self, *args: int) -> int:
        params = self._params
        for i, value in enumerate(args):
            params[i].of.i32 = value
        with _enter_wasm(self._store) as trap:
            error = _wasm_ffi.wasmtime_func_call(
                self._store._context(), self._func, params, self._arity, self._results, 1, trap
            )
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return self._results[0].of.i32 & 0xFFFFFFFF


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else err.__class__.__name__
