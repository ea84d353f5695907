"""The wasm engine's own machinery: the ABI fast path, the instance pool, host
builtins, and prebuilt bundles (`opa build -t wasm`)."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from pdp.engines.base import EngineError
from pdp.engines.opa_server import OpaServerEngine
from pdp.engines.wasm import WasmEngine
from pdp.engines.wasm_abi import WasmInstance
from pdp.policy.bundle import load_bundle
from pdp.policy.errors import PolicyError
from tests.conftest import FIXTURE_POLICIES, SHIPPED_POLICIES

ALICE = {
    "request": {"method": "GET", "parsed_path": ["api", "v1", "users", "me"], "client_ip": "10.0.0.1"},
    "subject": {"authenticated": True, "sub": "alice", "roles": ["user"], "plan": "pro", "mfa": False},
}


def write(root, files: dict):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def shipped():
    engine = WasmEngine()
    return engine, engine.compile(load_bundle(SHIPPED_POLICIES))


def test_fast_call_gives_what_wasmtime_func_call_gives(shipped):
    engine, compiled = shipped
    instance: WasmInstance = compiled.pool.take()
    raw = json.dumps(ALICE).encode()
    fast = instance.evaluate(compiled.entrypoint_id, raw)
    exports = instance._instance.exports(instance._store)
    heap = instance._input_addr + len(raw)
    slow_addr = exports["opa_eval"](
        instance._store, 0, compiled.entrypoint_id, instance._data_addr, instance._input_addr, len(raw), heap, 0
    )
    assert instance._cstring(instance._store, slow_addr) == fast
    assert json.loads(fast)[0]["result"]["headers"]["x-user-id"] == "alice"
    compiled.pool.give_back(instance)


def test_heap_and_memory_stay_flat_over_many_evaluations(shipped):
    engine, compiled = shipped
    instance = compiled.pool.take()
    raw = json.dumps(ALICE).encode()
    instance.evaluate(compiled.entrypoint_id, raw)
    size = instance._memory.data_len(instance._store)
    for i in range(3000):
        doc = {**ALICE, "subject": {**ALICE["subject"], "sub": f"user-{i}"}}
        instance.evaluate(compiled.entrypoint_id, json.dumps(doc).encode())
    assert instance._memory.data_len(instance._store) == size
    compiled.pool.give_back(instance)


def test_concurrent_evaluations_never_share_an_instance(shipped):
    """Threads evaluate at once; each answer carries its own caller."""
    engine, compiled = shipped
    wrong, errors = [], []

    def work(n):
        try:
            for i in range(150):
                sub = f"t{n}-{i}"
                d = engine.evaluate(compiled, {**ALICE, "subject": {**ALICE["subject"], "sub": sub}})
                if d["headers"]["x-user-id"] != sub:
                    wrong.append((sub, d["headers"]["x-user-id"]))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and wrong == []
    assert compiled.pool.created >= 2  # more than one instance was needed, and made


def test_an_aborted_evaluation_drops_its_instance_and_the_next_one_works(tmp_path):
    root = write(
        tmp_path,
        {
            "gateway/decision.rego": 'package gateway\n\ndecision := {"allow": true} if input.x\n'
            'decision := {"allow": false} if input.x\n'
        },
    )
    engine = WasmEngine()
    compiled = engine.compile(load_bundle(root))
    for _ in range(5):
        with pytest.raises(EngineError) as err:
            engine.evaluate(compiled, {"x": True})
        assert "conflict" in str(err.value) or "abort" in str(err.value)
        assert engine.evaluate(compiled, {"x": False}) is None


def test_host_builtins_match_real_opa(tmp_path, opa_server):
    root = write(
        tmp_path,
        {
            "gateway/decision.rego": "package gateway\n\ndecision := "
            '{"q": urlquery.encode(input.v), "t": time.now_ns() > 0}\n'
        },
    )
    bundle = load_bundle(root)
    engine, opa = WasmEngine(), OpaServerEngine(opa_server.url, timeout_s=10)
    compiled, pushed = engine.compile(bundle), opa.compile(bundle)
    for value in ["a b", "a+b&c=d/e?f", "é€😀", "~-._*'()!", '"\\', "\x00\x1f\u2028"]:
        assert engine.evaluate(compiled, {"v": value}) == opa.evaluate(pushed, {"v": value}), value


def test_a_prebuilt_bundle_serves_without_an_opa_binary(tmp_path, opa_binary):
    out = tmp_path / "bundle.tar.gz"
    subprocess.run(
        [opa_binary, "build", "-t", "wasm", "-e", "gateway/decision", "-o", str(out), "--ignore", "*_test.rego", "."],
        cwd=SHIPPED_POLICIES,
        check=True,
        timeout=120,
    )
    bundle = load_bundle(out, {"rate_limit_per_minute": 7, "rate_limit_burst": 9, "rate_limit_enabled": True})
    assert bundle.wasm and bundle.modules and bundle.data["gateway"]["settings"]["rate_limit_burst"] == 9
    engine = WasmEngine(opa_binary="/nonexistent/opa")
    d = engine.evaluate(engine.compile(bundle), ALICE)
    assert d["headers"]["x-user-id"] == "alice"
    assert {q["name"]: q["burst"] for q in d["quotas"]}["user_per_minute"] == 9


def test_a_bundle_without_policy_wasm_is_refused(tmp_path, opa_binary):
    out = tmp_path / "bundle.tar.gz"
    subprocess.run([opa_binary, "build", "-o", str(out), str(FIXTURE_POLICIES)], check=True, timeout=120)
    with pytest.raises(PolicyError, match="no policy.wasm"):
        load_bundle(out)


def test_missing_opa_binary_is_one_clear_error(tmp_path):
    with pytest.raises(PolicyError, match="^OPA_BINARY: '/nonexistent/opa' not found"):
        WasmEngine(opa_binary="/nonexistent/opa").compile(load_bundle(FIXTURE_POLICIES))
