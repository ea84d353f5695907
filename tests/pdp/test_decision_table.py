"""The decision table (tests/data/decision_cases.json) on both engines.

Each case gives the same decision on the wasm engine (with the input
trimmed to what the policies read, as the PDP does) and on a real OPA server
(with the whole input); end to end, the two PDP engines agree too.
"""

import json
import time

import pytest
import requests

from pdp.app import policy_settings
from pdp.authn.tokens import sign_access_token
from pdp.config import load_settings
from pdp.engines.opa_server import OpaServerEngine
from pdp.engines.wasm import WasmEngine
from pdp.policy.analysis import input_needs
from pdp.policy.bundle import load_bundle
from tests.conftest import ROOT, SHIPPED_POLICIES

CASES = json.loads((ROOT / "tests" / "data" / "decision_cases.json").read_text())
IDS = [c["name"] for c in CASES]


def test_table_is_large_enough():
    assert len(CASES) >= 40
    paths = {c["input"]["request"]["path"] for c in CASES}
    for prefix in ("meta", "auth", "users", "sessions", "manifests", "trust", "chain", "wallets"):
        assert any(p.startswith(f"/api/v1/{prefix}") for p in paths), prefix


@pytest.fixture(scope="module")
def engines(opa_binary):
    from tests.support.ports import free_port
    from tests.support.processes import Server

    port = free_port()
    opa = Server([opa_binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"], port)
    defaults = policy_settings(load_settings({"JWT_SECRET_KEY": "x" * 32}))
    wasm = WasmEngine()
    remote = OpaServerEngine(opa.url, timeout_s=5)
    cache = {}

    def for_settings(settings):
        """Both engines loaded with data.gateway.settings = settings (the case's, or the defaults)."""
        key = json.dumps(settings or defaults, sort_keys=True)
        if key not in cache:
            bundle = load_bundle(SHIPPED_POLICIES, settings or defaults)
            cache[key] = (input_needs(bundle.modules, bundle.data), wasm.compile(bundle))
        needs, compiled = cache[key]
        return needs, compiled, remote.compile(load_bundle(SHIPPED_POLICIES, settings or defaults))

    yield wasm, remote, for_settings
    opa.stop()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_identical_on_both_engines(engines, case):
    wasm, remote, for_settings = engines
    needs, compiled, pushed = for_settings(case.get("settings"))
    ours = wasm.evaluate(compiled, needs.trim(case["input"]))
    theirs = remote.evaluate(pushed, case["input"])
    assert ours == theirs
    expect = case["expect"]
    assert (ours["allow"], ours["status"]) == (expect["allow"], expect["status"])
    if "reason" in expect:
        assert ours["reason"] == expect["reason"]
    if "headers" in expect:
        assert ours["headers"] == expect["headers"]
    if "quotas_names" in expect:
        assert [q["name"] for q in ours["quotas"]] == expect["quotas_names"]


def _check_request(case, secret):
    req, subject = case["input"]["request"], case["input"]["subject"]
    headers = dict(req.get("headers", {}))
    if subject.get("authenticated"):
        now = int(time.time())
        claims = {
            "sub": subject["sub"],
            "roles": subject.get("roles", []),
            "plan": subject.get("plan", "free"),
            "mfa": subject.get("mfa", False),
            "iat": now,
            "exp": now + 600,
        }
        headers["authorization"] = "Bearer " + sign_access_token(claims, secret)
    path = req["path"]
    return {
        "request": {
            "method": req["method"],
            "path": path,
            "headers": headers,
            "host": req.get("host", ""),
            "scheme": req.get("scheme", "https"),
            "client_ip": req.get("client_ip", ""),
        }
    }


def test_both_pdp_engines_agree_end_to_end(pdp_factory, opa_server, jwt_secret):
    common = {"POLICY_DIR": str(SHIPPED_POLICIES), "RATE_LIMIT_ENABLED": "false"}
    wasm = pdp_factory(**common)
    with_opa = pdp_factory(PDP_ENGINE="opa", OPA_URL=opa_server.url, **common)
    session = requests.Session()
    for case in CASES:
        subject = case["input"]["subject"]
        # Cases a verified JWT cannot produce (the PDP answers 401 before the policy).
        malformed = (
            not isinstance(subject.get("roles", []), list)
            or not isinstance(subject.get("mfa", False), bool)
            or not isinstance(subject.get("plan", ""), str)
        )
        if (
            case.get("settings")
            or subject.get("claims")
            or malformed
            or (subject.get("authenticated") and not subject.get("sub"))
        ):
            continue
        body = _check_request(case, jwt_secret)
        if not body["request"]["method"].isupper():
            # /v1/check judges only upper-case methods (RFC 9110 9.1): a 400 problem on both,
            # before any policy (the engine-level test above still decides the case).
            for server in (wasm, with_opa):
                refused = session.post(server.url + "/v1/check", json=body, timeout=5)
                assert refused.status_code == 400, case["name"]
            continue
        a = session.post(wasm.url + "/v1/check", json=body, timeout=5).json()
        b = session.post(with_opa.url + "/v1/check", json=body, timeout=5).json()
        keys = ("allow", "status", "reason", "headers")
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, case["name"]
        if case["expect"].get("status") and not case["expect"].get("quotas_names"):
            assert a["status"] == case["expect"]["status"], case["name"]
