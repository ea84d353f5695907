"""POST /v1/check against the real gunicorn-served PDP."""

import json

import requests

PROBLEM = "application/problem+json"


def check(pdp, method="GET", path="/public", headers=None, **extra):
    body = {"request": {"method": method, "path": path, "headers": headers or {}, **extra}}
    resp = requests.post(pdp.url + "/v1/check", json=body, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_allow_has_the_full_decision_shape(pdp, mint):
    d = check(pdp, path="/private/x", headers={"authorization": "Bearer " + mint("alice", ["user"])})
    assert d["allow"] is True and d["status"] == 200 and d["reason"] == "ok"
    assert d["headers"] == {"x-user-id": "alice", "x-user-roles": "user"}
    assert d["policy_revision"].startswith("sha256:")
    assert len(d["decision_id"]) == 32
    assert set(d) >= {"allow", "status", "reason", "decision_id", "headers", "response_headers", "policy_revision"}


def test_anonymous_on_protected_route_is_401(pdp):
    d = check(pdp, path="/private/x")
    assert (d["allow"], d["status"]) == (False, 401)


def test_authenticated_but_not_allowed_is_403(pdp, mint):
    d = check(pdp, method="POST", path="/admin", headers={"authorization": "Bearer " + mint("bob", ["user"])})
    assert (d["allow"], d["status"]) == (False, 403)


def test_path_is_normalized_before_the_policy(pdp, mint):
    token = "Bearer " + mint("root", ["admin"])
    d = check(pdp, method="POST", path="/private/../admin", headers={"authorization": token})
    assert d["allow"] is True
    d = check(pdp, method="POST", path="/public/%2e%2e/admin")
    assert d["status"] == 401  # judged as /admin, not as /public


def test_ambiguous_path_is_a_400_decision(pdp):
    d = check(pdp, path="/public%2F..%2Fadmin")
    assert (d["allow"], d["status"]) == (False, 400)
    assert d["reason"].startswith("ambiguous_path")


def test_malformed_json_is_problem_400(pdp):
    resp = requests.post(pdp.url + "/v1/check", data=b"{not json", timeout=5)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["status"] == 400


def test_numbers_json_has_no_spelling_for_are_problem_400(pdp):
    # The json module reads NaN, Infinity and 1e999 (as inf); servicekit/json_codec.py does not.
    for raw in (b"NaN", b"-Infinity", b"1e999"):
        body = b'{"request":{"method":"GET","path":"/public","weight":' + raw + b"}}"
        resp = requests.post(pdp.url + "/v1/check", data=body, timeout=5)
        assert resp.status_code == 400, raw
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["detail"] == "body is not valid JSON"


def test_wrong_shapes_are_problem_400(pdp):
    for body in (
        [],
        {"request": []},
        {"request": {"method": "GET"}},
        {"request": {"method": 5, "path": "/"}},
        {"request": {"method": "GET", "path": "/", "headers": {"a": 1}}},
        {"request": {"method": "G E T", "path": "/"}},
        {"request": {"method": "get", "path": "/"}},
        {"request": {"method": "Get", "path": "/"}},
        {"request": {"method": "GET", "path": "/", "client_ip": 7}},
    ):
        resp = requests.post(pdp.url + "/v1/check", json=body, timeout=5)
        assert resp.status_code == 400, body
        assert resp.headers["content-type"] == PROBLEM


def test_oversized_body_is_413(pdp):
    body = json.dumps({"request": {"method": "GET", "path": "/", "headers": {"x": "a" * 70000}}})
    resp = requests.post(pdp.url + "/v1/check", data=body, timeout=5)
    assert resp.status_code == 413
    assert resp.headers["content-type"] == PROBLEM


def test_too_many_headers_is_400(pdp):
    headers = {f"x-h{i}": "v" for i in range(201)}
    resp = requests.post(
        pdp.url + "/v1/check", json={"request": {"method": "GET", "path": "/", "headers": headers}}, timeout=5
    )
    assert resp.status_code == 400


def test_request_id_is_kept_or_made(pdp):
    resp = requests.post(
        pdp.url + "/v1/check",
        json={"request": {"method": "GET", "path": "/public"}},
        headers={"X-Request-ID": "abc-123"},
        timeout=5,
    )
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = requests.post(
        pdp.url + "/v1/check",
        json={"request": {"method": "GET", "path": "/public"}},
        headers={"X-Request-ID": "bad id with spaces"},
        timeout=5,
    )
    assert resp.headers["X-Request-ID"] != "bad id with spaces" and len(resp.headers["X-Request-ID"]) == 32


def test_unknown_route_is_problem_404(pdp):
    resp = requests.get(pdp.url + "/v1/nothing-here", timeout=5)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM


def test_operational_endpoints(pdp):
    assert requests.get(pdp.url + "/v1/health", timeout=5).json()["status"] == "ok"
    ready = requests.get(pdp.url + "/v1/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"policy": True, "engine": True, "redis": True}
    version = requests.get(pdp.url + "/v1/version", timeout=5).json()
    assert version["version"] == "0.1.0" and version["engine"] == "wasm"
    pols = requests.get(pdp.url + "/v1/policies", timeout=5).json()
    assert pols["modules"] == ["gateway/decision.rego"] and pols["revision"].startswith("sha256:")
