"""PDP_ENGINE=opa: the same decisions from a real OPA server."""

import time

import requests

CASES = [
    ("GET", "/public", None, (True, 200)),
    ("GET", "/private/x", None, (False, 401)),
    ("GET", "/private/x", ("user",), (True, 200)),
    ("POST", "/admin", ("user",), (False, 403)),
    ("POST", "/admin", ("admin",), (True, 200)),
]


def ask(server, method, path, token=None):
    headers = {"authorization": "Bearer " + token} if token else {}
    resp = requests.post(
        server.url + "/v1/check", timeout=5, json={"request": {"method": method, "path": path, "headers": headers}}
    )
    assert resp.status_code == 200
    return resp.json()


def test_same_decisions_as_wasm(pdp, pdp_factory, opa_server, mint):
    opa_pdp = pdp_factory(PDP_ENGINE="opa", OPA_URL=opa_server.url)
    assert requests.get(opa_pdp.url + "/v1/version", timeout=5).json()["engine"] == "opa"
    for method, path, roles, expected in CASES:
        token = mint("zoe", roles) if roles else None
        a, b = ask(pdp, method, path, token), ask(opa_pdp, method, path, token)
        assert (a["allow"], a["status"]) == expected
        assert {k: a[k] for k in ("allow", "status", "reason", "headers")} == {
            k: b[k] for k in ("allow", "status", "reason", "headers")
        }


def test_opa_down_fails_closed_and_not_ready(pdp_factory, opa_server):
    server = pdp_factory(PDP_ENGINE="opa", OPA_URL=opa_server.url)
    assert ask(server, "GET", "/public")["allow"] is True
    opa_server.stop()
    d = ask(server, "GET", "/public")
    assert (d["allow"], d["status"], d["reason"]) == (False, 503, "policy_error")
    ready = requests.get(server.url + "/v1/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["checks"]["engine"] is False


def test_policies_pushed_again_after_opa_restart(pdp_factory, opa_binary):
    from tests.support.ports import free_port
    from tests.support.processes import Server

    port = free_port()
    argv = [opa_binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
    opa = Server(argv, port)
    server = pdp_factory(PDP_ENGINE="opa", OPA_URL=opa.url)
    assert ask(server, "GET", "/public")["allow"] is True
    opa.stop()
    opa = Server(argv, port)  # a fresh OPA knows nothing of our policies
    try:
        deadline = time.monotonic() + 5
        allowed = False
        while time.monotonic() < deadline and not allowed:
            allowed = ask(server, "GET", "/public")["allow"]
            time.sleep(0.1)
        assert allowed
    finally:
        opa.stop()


def test_opa_loading_its_own_bundle(pdp_factory, opa_binary, mint):
    """OPA_PUSH_POLICIES=false: OPA serves the policy folder itself (as from a bundle)."""
    from tests.conftest import FIXTURE_POLICIES
    from tests.support.ports import free_port
    from tests.support.processes import Server

    port = free_port()
    opa = Server(
        [
            opa_binary,
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--log-level",
            "error",
            "--ignore",
            "*_test.rego",
            str(FIXTURE_POLICIES),
        ],
        port,
    )
    try:
        server = pdp_factory(PDP_ENGINE="opa", OPA_URL=opa.url, OPA_PUSH_POLICIES="false")
        assert ask(server, "GET", "/private/x", mint("b", ["user"]))["allow"] is True
        assert ask(server, "GET", "/private/x")["status"] == 401
        policies = requests.get(opa.url + "/v1/policies", timeout=5).json()["result"]
        assert not any(p["id"].startswith("lucid_") for p in policies)  # nothing was pushed
    finally:
        opa.stop()


def test_switching_policy_sets_on_one_opa(opa_server, tmp_path):
    """A reload may replace many interdependent modules by a different set, and back."""
    from pdp.engines.opa_server import OpaServerEngine
    from pdp.policy.bundle import load_bundle
    from tests.conftest import FIXTURE_POLICIES, SHIPPED_POLICIES

    engine = OpaServerEngine(opa_server.url, timeout_s=5)
    public = {
        "request": {"method": "GET", "parsed_path": ["public"], "path": "/public"},
        "subject": {"authenticated": False, "roles": []},
    }
    meta = {
        "request": {"method": "GET", "parsed_path": ["api", "v1", "meta", "health"], "path": "/api/v1/meta/health"},
        "subject": {"authenticated": False, "roles": []},
    }
    for folder, doc, allowed in (
        (SHIPPED_POLICIES, meta, True),
        (FIXTURE_POLICIES, public, True),
        (FIXTURE_POLICIES, meta, False),
        (SHIPPED_POLICIES, meta, True),
    ):
        pushed = engine.compile(load_bundle(folder))
        assert engine.evaluate(pushed, doc)["allow"] is allowed, folder
    ids = requests.get(opa_server.url + "/v1/policies", timeout=5).json()["result"]
    assert sorted(p["id"] for p in ids) == sorted(
        "lucid_" + n.replace("/", "_").replace(".", "_") for n in load_bundle(SHIPPED_POLICIES).modules
    )
