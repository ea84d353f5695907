"""The wasm engine: compile once, check builtins at load, never crash on odd results."""

import re

import pytest

from pdp.engines.wasm import WasmEngine
from pdp.policy.analysis import WHOLE, input_needs
from pdp.policy.bundle import load_bundle
from pdp.policy.errors import PolicyError


def bundle_of(tmp_path, files: dict):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_bundle(tmp_path)


@pytest.mark.parametrize(
    "call",
    [
        'http.send({"method": "GET", "url": "http://x"}).status_code == 200',
        'sprintf("%v", [input.x]) == "1"',
        'uuid.rfc4122("a") != ""',
    ],
)
def test_unsupported_builtin_fails_the_load_with_file_line(tmp_path, call):
    src = f'package gateway\n\ndecision := {{"allow": true}} if {{\n\t{call}\n}}\n'
    b = bundle_of(tmp_path, {"gateway/decision.rego": src})
    with pytest.raises(PolicyError) as err:
        WasmEngine().compile(b)
    assert "gateway/decision.rego:4:2" in str(err.value)
    assert "unsupported builtin" in str(err.value)


def test_user_functions_and_imports_are_not_builtins(tmp_path):
    b = bundle_of(
        tmp_path,
        {
            "gateway/lib.rego": 'package gateway.lib\n\nis_admin(roles) if "admin" in roles\n',
            "gateway/decision.rego": "package gateway\n\nimport data.gateway.lib\n\n"
            'decision := {"allow": lib.is_admin(input.roles)} if startswith("a", "a")\n'
            "twice(x) := y if y := x * 2\n\nn := twice(2)\n",
        },
    )
    WasmEngine().compile(b)  # does not raise


def test_syntax_error_points_at_file_and_line(tmp_path):
    b = bundle_of(tmp_path, {"gateway/decision.rego": 'package gateway\n\ndecision := {\n\t"allow": input.a == ,\n}\n'})
    with pytest.raises(PolicyError) as err:
        WasmEngine().compile(b)
    assert re.match(r"gateway/decision.rego:[34]: unexpected , token", str(err.value))


def test_bad_data_json_points_at_line(tmp_path):
    files = {"gateway/decision.rego": "package gateway\n\ndecision := {}\n", "gateway/data.json": '{\n "a": 1,\n}\n'}
    with pytest.raises(PolicyError, match=r"gateway/data.json:3"):
        bundle_of(tmp_path, files)


def test_undefined_decision_is_none_not_a_crash(tmp_path):
    b = bundle_of(
        tmp_path, {"gateway/decision.rego": 'package gateway\n\ndecision := {"allow": true} if input.x == 1\n'}
    )
    engine = WasmEngine()
    compiled = engine.compile(b)
    for _ in range(50):  # undefined many times over: the pooled instances must not wear out
        assert engine.evaluate(compiled, {"x": 2}) is None
    assert engine.evaluate(compiled, {"x": 1}) == {"allow": True}


def test_conflicting_outputs_raise_engine_error(tmp_path):
    from pdp.engines.base import EngineError

    b = bundle_of(
        tmp_path,
        {
            "gateway/decision.rego": 'package gateway\n\ndecision := {"allow": true} if input.x\n'
            'decision := {"allow": false} if input.x\n'
        },
    )
    engine = WasmEngine()
    compiled = engine.compile(b)
    with pytest.raises(EngineError):
        engine.evaluate(compiled, {"x": True})
    assert engine.evaluate(compiled, {"x": False}) is None  # and it keeps working


def test_data_is_under_the_folder_path(tmp_path):
    b = bundle_of(
        tmp_path,
        {
            "gateway/decision.rego": "package gateway\n\ndecision := data.gateway.answer\n",
            "gateway/data.json": '{"answer": {"allow": true, "status": 200}}',
        },
    )
    engine = WasmEngine()
    assert engine.evaluate(engine.compile(b), {}) == {"allow": True, "status": 200}


def test_input_needs_trims_to_what_policies_read():
    needs = input_needs(
        {
            "a.rego": "package a\n# input.request.body in a comment\n"
            'x if input.request.method == "GET"\n'
            'y if input.request.headers["x-tenant"] == "t"\n'
            'z if input.subject.roles[_] == "admin"\n'
            's := "input.request.host"\n'
        }
    )
    doc = {
        "request": {"method": "GET", "path": "/", "headers": {"x-tenant": "t", "user-agent": "u"}, "host": "h"},
        "subject": {"roles": ["admin"], "sub": "s", "claims": {"jti": "1"}},
        "now_ns": 1,
    }
    assert needs.trim(doc) == {
        "request": {"method": "GET", "headers": {"x-tenant": "t"}},
        "subject": {"roles": ["admin"]},
    }
    assert needs.memoizable


def test_reading_a_clock_disables_memoization():
    assert not input_needs({"a.rego": "package a\nx if time.now_ns() > 0\n"}).memoizable
    assert not input_needs({"a.rego": "package a\nx if input.now_ns > 0\n"}).memoizable
    whole = input_needs({"a.rego": "package a\nx := input\n"})
    assert whole.tree is WHOLE and whole.memoizable  # now_ns is never named, so never given


def test_whole_objects_keep_only_named_keys():
    needs = input_needs(
        {"a.rego": 'package a\nallow if f(input.request)\nf(r) if r.headers["x-api-version"] == "2"\n'},
        data={"required": ["x-tenant"]},
    )
    doc = {
        "request": {"method": "GET", "headers": {"x-api-version": "2", "x-tenant": "t", "user-agent": "u"}},
        "now_ns": 5,
    }
    assert needs.trim(doc) == {"request": {"headers": {"x-api-version": "2", "x-tenant": "t"}}}
