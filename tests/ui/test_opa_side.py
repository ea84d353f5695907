"""The playground's OPA column when no OPA can answer: said so, never an error of the page."""

import dataclasses

from pdp.admin_ui.opa_side import OpaSide, packages, rules_from_data
from pdp.engines.wasm import WasmEngine
from pdp.policy.bundle import load_bundle
from tests.conftest import FIXTURE_POLICIES


def test_without_an_opa_binary_the_opa_column_says_why():
    side = OpaSide(WasmEngine("/nonexistent/opa"), "/nonexistent/opa")
    assert side.available() is None
    out = side.evaluate(load_bundle(str(FIXTURE_POLICIES)), {"request": {}}, draft=False)
    assert out["ok"] is False and out["available"] is False and "/nonexistent/opa" in out["error"]


def test_a_prebuilt_bundle_without_sources_is_said_so(opa_binary):
    bundle = dataclasses.replace(load_bundle(str(FIXTURE_POLICIES)), modules={})
    out = OpaSide(WasmEngine(opa_binary), opa_binary).evaluate(bundle, {}, draft=False)
    assert out["ok"] is False and "without its Rego sources" in out["error"]


def test_rules_are_the_packages_rules_not_their_data_or_sub_packages():
    modules = {"a.rego": "package app\n\nallow := true\n", "b.rego": "# package nope\npackage app.sub\n\nx := 1\n"}
    data_doc = {"app": {"allow": True, "off": False, "none": [], "settings": {"k": 1}, "sub": {"x": 1}}}
    fired, not_fired = rules_from_data(data_doc, modules, {"app": {"settings": {"k": 1}}})
    assert packages(modules) == ["app", "app.sub"]
    assert fired == ["app.allow", "app.sub.x"] and not_fired == ["app.none", "app.off"]
