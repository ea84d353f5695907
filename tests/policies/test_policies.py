"""The shipped policies on both engines: a real OPA server, and the wasm engine.

Checks that `opa fmt`, `opa check --strict` and `opa test` are clean (also
through `pdp test`), and that every case of tests/data/decision_cases.json
gets the expected decision on both engines, with identical full decision
documents.
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest

from pdp.policy.analysis import input_needs
from pdp.policy.bundle import load_bundle

from .conftest import (
    MALFORMED_CASES_FILE,
    POLICIES,
    Wasm,
    load_cases,
    opa_decisions,
    rego_test_names,
    run,
    shipped_data,
    wasm_decisions,
)

CASES = load_cases()
ALL_CASES = CASES + load_cases(MALFORMED_CASES_FILE)
CASE_IDS = [c["name"] for c in ALL_CASES]
DECISION_KEYS = {"allow", "status", "reason", "headers", "response_headers", "quotas", "cache_ttl_s"}
DESCRIPTOR_KEYS = {"name", "key", "limit", "window_s", "burst", "cost", "algorithm", "shadow", "fail_mode"}


@pytest.fixture(scope="module")
def on_opa(shipped_opa_server):
    return opa_decisions(shipped_opa_server, ALL_CASES)


@pytest.fixture(scope="module")
def on_wasm():
    return wasm_decisions(ALL_CASES)


# --- OPA's own tooling -------------------------------------------------------


def test_opa_fmt_lists_no_file(opa_binary):
    result = run([opa_binary, "fmt", "--list", "policies/"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_opa_check_strict_passes(opa_binary):
    result = run([opa_binary, "check", "--strict", "policies/"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_opa_test_passes_every_rego_test(opa_binary):
    result = run([opa_binary, "test", "policies/"])
    assert result.returncode == 0, result.stdout + result.stderr
    total = len(rego_test_names())
    assert f"PASS: {total}/{total}" in result.stdout


# --- `pdp test` ------------------------------------------------------------


def test_pdp_test_command_passes_every_rego_test():
    """`pdp test` is the pinned `opa test`: OPA's own semantics."""
    result = run([sys.executable, "-m", "pdp", "test", "policies/"], timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    total = len(rego_test_names())
    assert re.search(rf"PASS: {total}/{total}\b", result.stdout), result.stdout[-2000:]


def test_a_broken_rule_fails_the_rego_tests(opa_binary, tmp_path):
    """The tests have teeth: an RBAC slip (money moves without MFA) is caught."""
    broken = tmp_path / "policies"
    shutil.copytree(POLICIES, broken)
    data_file = broken / "gateway" / "data.json"
    data = json.loads(data_file.read_text())
    data["access"]["wallets.transactions.create"] = "authenticated"
    data_file.write_text(json.dumps(data))

    result = run([opa_binary, "test", str(broken)])
    assert result.returncode != 0
    assert "test_money_moves_need_mfa_whatever_the_roles" in result.stdout
    through_pdp = run([sys.executable, "-m", "pdp", "test", str(broken)], timeout=240)
    assert through_pdp.returncode != 0
    assert "test_money_moves_need_mfa_whatever_the_roles" in through_pdp.stdout


# --- The decision case table -------------------------------------------------


def test_case_table_covers_every_endpoint_and_outcome():
    assert len(CASES) >= 45
    assert len(set(CASE_IDS)) == len(CASE_IDS)  # names are unique across both files
    covered = set()
    for case in CASES:
        segments = case["input"]["request"]["parsed_path"][2:]
        method = case["input"]["request"]["method"].upper()
        for template, methods in shipped_data()["gateway"]["endpoints"].items():
            parts = template.split("/")
            if (
                len(parts) == len(segments)
                and all(p in ("{id}", s) for p, s in zip(parts, segments))
                and method in methods
            ):
                covered.add((template, method))
    every = {(t, m) for t, ms in shipped_data()["gateway"]["endpoints"].items() for m in ms}
    assert every - covered == set(), "endpoints without a case"
    reasons = {c["expect"]["reason"] for c in CASES}
    assert reasons >= {"ok", "authentication_required", "forbidden", "mfa_required", "no_route", "method_not_allowed"}
    subjects = [c["input"]["subject"] for c in CASES]
    assert any(not s.get("authenticated") for s in subjects)
    assert any("admin" in s.get("roles", []) for s in subjects)
    assert any(s.get("mfa") is True for s in subjects)
    assert any(c.get("settings", {}).get("rate_limit_enabled") is False for c in CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_case_on_opa(on_opa, case):
    assert_expected(on_opa[case["name"]], case["expect"])


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_case_on_wasm(on_wasm, case):
    assert_expected(on_wasm[case["name"]], case["expect"])


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_engines_give_identical_decisions(on_opa, on_wasm, case):
    assert on_wasm[case["name"]] == on_opa[case["name"]]


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_decision_document_has_the_contract_shape(on_wasm, case):
    d = on_wasm[case["name"]]
    assert set(d) == DECISION_KEYS
    assert type(d["allow"]) is bool and type(d["status"]) is int and isinstance(d["reason"], str)
    assert (d["status"] == 200) == d["allow"]
    for headers in (d["headers"], d["response_headers"]):
        assert all(k == k.lower() and isinstance(v, str) for k, v in headers.items())
    if not d["allow"]:
        assert d["headers"] == {} and d["quotas"] == [] and d["cache_ttl_s"] == 0
    assert d["cache_ttl_s"] == (5 if d["allow"] and not d["quotas"] else 0)
    names = [q["name"] for q in d["quotas"]]
    assert names == sorted(names)
    for q in d["quotas"]:
        assert set(q) == DESCRIPTOR_KEYS
        assert q["algorithm"] in {"token_bucket", "calendar_day", "calendar_month"}
        assert q["fail_mode"] in {"local", "open", "closed"}
        assert re.fullmatch(r"(user|ip):.+", q["key"]) and "{" not in q["key"]
        assert all(type(q[k]) is int and q[k] > 0 for k in ("limit", "window_s", "burst", "cost"))


def test_settings_from_the_environment_set_the_per_minute_descriptor(on_opa, on_wasm):
    name = "custom per-minute settings"
    for decisions in (on_opa, on_wasm):
        per_minute = [q for q in decisions[name]["quotas"] if q["name"] == "user_per_minute"]
        assert per_minute == [
            {
                "name": "user_per_minute",
                "key": "user:alice",
                "limit": 7,
                "window_s": 60,
                "burst": 9,
                "cost": 1,
                "algorithm": "token_bucket",
                "shadow": False,
                "fail_mode": "local",
            }
        ]


# --- What the PDP relies on --------------------------------------------------


def test_policy_reads_no_clock_and_only_named_input_fields():
    """The PDP memoizes decisions keyed by exactly the input fields read."""
    needs = input_needs(load_bundle(POLICIES).modules)
    assert needs.memoizable
    assert needs.tree == {
        "request": {"method": True, "parsed_path": True, "client_ip": True},
        "subject": {"authenticated": True, "sub": True, "roles": True, "plan": True, "mfa": True},
    }


def test_trimmed_input_gives_the_same_decisions(on_wasm):
    """What the PDP passes (input trimmed to the fields read) decides like the full input."""
    needs = input_needs(load_bundle(POLICIES).modules)
    engine = Wasm()
    for case in ALL_CASES:
        if "settings" in case:
            continue
        assert engine.decide(needs.trim(case["input"])) == on_wasm[case["name"]], case["name"]


def test_pdp_check_accepts_the_policies():
    result = run([sys.executable, "-m", "pdp", "check", "policies/"])
    assert result.returncode == 0, result.stdout + result.stderr


def assert_expected(decision, expect: dict) -> None:
    assert decision is not None, "data.gateway.decision is undefined"
    got = {k: decision[k] for k in ("allow", "status", "reason")}
    assert got == {k: expect[k] for k in ("allow", "status", "reason")}
    if "headers" in expect:
        assert decision["headers"] == expect["headers"]
    if "quotas_names" in expect:
        assert [q["name"] for q in decision["quotas"]] == expect["quotas_names"]
