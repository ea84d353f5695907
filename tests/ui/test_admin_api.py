"""The admin page's API (/ui/api/*) against the real PDP: who may, CSRF, and what each part shows."""

import requests

SESSIONS = "/api/v1/sessions"


def check(pdp, token, path=SESSIONS, method="GET"):
    body = {"request": {"method": method, "path": path, "headers": {"authorization": "Bearer " + token}}}
    return requests.post(pdp.url + "/v1/check", json=body, timeout=5).json()


def signed_in(pdp, token):
    s = requests.Session()
    resp = s.post(pdp.url + "/ui/session", json={"token": token}, timeout=5)
    assert resp.status_code == 200, resp.text
    return s, resp


def test_page_loads_without_inline_script_and_data_needs_admin(ui_pdp, token):
    page = requests.get(ui_pdp.url + "/ui/", timeout=5)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/ui/static/app.js"' in page.text
    assert requests.get(ui_pdp.url + "/ui", allow_redirects=False, timeout=5).headers["location"].endswith("/ui/")
    assert (
        requests.get(ui_pdp.url + "/ui/static/app.js", timeout=5).headers["content-type"].startswith("text/javascript")
    )
    assert requests.get(ui_pdp.url + "/ui/static/nope.js", timeout=5).status_code == 404
    assert requests.get(ui_pdp.url + "/ui/api/stats", timeout=5).status_code == 401
    user = {"Authorization": "Bearer " + token("alice", ["user"])}
    denied = requests.get(ui_pdp.url + "/ui/api/stats", headers=user, timeout=5)
    assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"
    assert (
        requests.post(ui_pdp.url + "/ui/session", json={"token": token("alice", ["user"])}, timeout=5).status_code
        == 403
    )
    assert requests.post(ui_pdp.url + "/ui/session", json={"token": "nope"}, timeout=5).status_code == 401
    # A cross-site form cannot sign anyone in: JSON only.
    assert requests.post(ui_pdp.url + "/ui/session", data={"token": token()}, timeout=5).status_code == 415


def test_session_cookie_is_httponly_strict_and_changes_need_the_csrf_token(ui_pdp, token):
    s, resp = signed_in(ui_pdp, token())
    cookies = resp.headers["set-cookie"]
    assert "lucid_ui_session=" in cookies and "HttpOnly" in cookies and "SameSite=Strict" in cookies
    assert "Path=/ui" in cookies
    csrf = resp.json()["csrf_token"]
    assert s.cookies.get("lucid_ui_csrf") == csrf
    assert s.get(ui_pdp.url + "/ui/api/me", timeout=5).json()["sub"] == "root"
    reset = ui_pdp.url + "/ui/api/quotas/reset"
    assert s.post(reset, json={"key": "user:nobody"}, timeout=5).status_code == 403
    assert s.post(reset, json={"key": "user:nobody"}, headers={"X-CSRF-Token": "wrong"}, timeout=5).status_code == 403
    assert s.post(reset, json={"key": "user:nobody"}, headers={"X-CSRF-Token": csrf}, timeout=5).status_code == 200
    s.delete(ui_pdp.url + "/ui/session", timeout=5)
    assert s.get(ui_pdp.url + "/ui/api/me", timeout=5).status_code == 401


def test_stats_count_decisions_and_quota_verdicts(ui_pdp, token):
    admin = {"Authorization": "Bearer " + token()}
    before = requests.get(ui_pdp.url + "/ui/api/stats", headers=admin, timeout=5).json()
    user = token("carol", ["user"])
    for _ in range(7):
        assert check(ui_pdp, user)["allow"] is True
    check(ui_pdp, user, path="/api/v1/nowhere")
    after = requests.get(ui_pdp.url + "/ui/api/stats", headers=admin, timeout=5).json()
    assert after["total"] - before["total"] == 8
    assert after["reasons"]["allow:ok"] - before["reasons"].get("allow:ok", 0) == 7
    assert sum(after["quota"].values()) > sum(before["quota"].values())
    assert after["buckets"][-1][0] is None and after["buckets"][-1][1] == after["total"]
    assert after["quantiles_ms"]["0.5"] > 0


def test_quota_top_keys_show_remaining_and_reset_refills(ui_pdp, token):
    admin = {"Authorization": "Bearer " + token()}
    user = token("dave", ["user"])
    for _ in range(5):
        check(ui_pdp, user)
    keys = {k["key"]: k for k in requests.get(ui_pdp.url + "/ui/api/quotas", headers=admin, timeout=5).json()["keys"]}
    dave = keys["user:dave"]
    minute = [q for q in dave["quotas"] if q["name"] == "user_per_minute"][0]
    assert minute["remaining"] < minute["burst"] and minute["reset_s"] >= 0
    refilled = requests.post(ui_pdp.url + "/ui/api/quotas/reset", json={"key": "user:dave"}, headers=admin, timeout=5)
    minute = [q for q in refilled.json()["quotas"] if q["name"] == "user_per_minute"][0]
    assert minute["remaining"] == minute["burst"]


def test_decision_tail_filters_and_masks(ui_pdp, token):
    admin = {"Authorization": "Bearer " + token()}
    erin = token("erin", ["user"])
    check(ui_pdp, erin)
    check(ui_pdp, erin, path="/api/v1/nowhere")
    url = ui_pdp.url + "/ui/api/decisions"
    mine = requests.get(url, params={"subject": "erin"}, headers=admin, timeout=5).json()["entries"]
    assert len(mine) == 2 and all(e["input"]["subject"]["sub"] == "erin" for e in mine)
    assert erin not in str(mine)  # the log never holds the credential
    denied = requests.get(url, params={"subject": "erin", "decision": "deny"}, headers=admin, timeout=5).json()
    assert [e["path"] for e in denied["entries"]] == ["/api/v1/nowhere"]
    routed = requests.get(url, params={"subject": "erin", "route": "/api/v1/sess"}, headers=admin, timeout=5).json()
    assert [e["path"] for e in routed["entries"]] == [SESSIONS]
    assert requests.get(url, params={"decision": "maybe"}, headers=admin, timeout=5).status_code == 400


def test_health_names_each_dependency(ui_pdp, token):
    deps = requests.get(
        ui_pdp.url + "/ui/api/health", headers={"Authorization": "Bearer " + token()}, timeout=5
    ).json()["dependencies"]
    assert deps["policy"]["ok"] and deps["policy"]["revision"].startswith("sha256:")
    assert deps["engine"]["ok"] and deps["redis"]["ok"]
    assert deps["mongodb"] == {"ok": None, "detail": "MONGODB_URI not set"}


def test_playground_on_the_loaded_policy_a_draft_and_a_replay(ui_pdp, token):
    admin = {"Authorization": "Bearer " + token()}
    url = ui_pdp.url + "/ui/api/playground"
    samples = requests.get(url + "/samples", headers=admin, timeout=5).json()["samples"]
    user_input = samples["user GET /api/v1/sessions"]
    loaded = requests.post(url, json={"input": user_input}, headers=admin, timeout=5).json()
    assert loaded["ok"] and not loaded["draft"] and loaded["decision"]["allow"] is True
    assert loaded["revision"].startswith("sha256:") and loaded["eval_ms"] > 0
    # Side by side: the embedded engine and OPA (opa eval with the PDP's OPA binary) decide alike.
    wasm, opa = loaded["engines"]["wasm"], loaded["engines"]["opa"]
    assert wasm["ok"] and opa["ok"] and loaded["agree"] is True, loaded["engines"]
    assert wasm["via"].startswith("embedded wasm") and opa["via"].startswith("opa eval")
    assert opa["decision"] == wasm["decision"] == loaded["decision"]
    assert wasm["eval_ms"] > 0 and opa["eval_ms"] > 0 and "timer_rego_query_eval_ns" in opa["timing"]
    # The rules that fired, as OPA evaluated each named rule for this input.
    assert {"gateway.decision", "gateway.subject_authenticated"} <= set(loaded["rules"]), loaded["rules"]
    assert "evaluated by OPA" in loaded["rules_note"]
    draft = 'package gateway\n\ndecision := {"allow": false, "status": 451, "reason": "draft says no"}\n'
    drafted = requests.post(
        url, json={"input": user_input, "draft": {"gateway/decision.rego": draft}}, headers=admin, timeout=10
    ).json()
    assert drafted["ok"] and drafted["draft"] and drafted["revision"].startswith("draft:")
    assert (drafted["decision"]["status"], drafted["decision"]["reason"]) == (451, "draft says no")
    assert drafted["engines"]["opa"]["decision"]["status"] == 451 and drafted["agree"] is True
    # ... and the draft was never loaded: the served policy still allows.
    assert check(ui_pdp, token("frank", ["user"]))["allow"] is True
    broken = requests.post(
        url,
        json={"input": user_input, "draft": {"gateway/decision.rego": "package gateway\n\ndecision := {"}},
        headers=admin,
        timeout=10,
    ).json()
    assert broken["ok"] is False and broken["stage"] == "compile" and broken["error"]
    # Replay a logged decision: its input, credentials already masked.
    entry = requests.get(
        ui_pdp.url + "/ui/api/decisions", params={"subject": "frank"}, headers=admin, timeout=5
    ).json()["entries"][0]
    replayed = requests.post(url, json={"replay": entry["decision_id"]}, headers=admin, timeout=5).json()
    assert replayed["ok"] and replayed["decision"]["allow"] is True
    assert (
        replayed["input"]["subject"]["sub"] == "frank"
        and "authorization" not in replayed["input"]["request"]["headers"]
    )
    for bad in ({"input": []}, {"input": {}, "draft": {"../x.rego": "package x"}}, {"surprise": 1}):
        resp = requests.post(url, json=bad, headers=admin, timeout=5)
        assert resp.status_code == 400, bad
    assert requests.post(url, json={"replay": "0" * 32}, headers=admin, timeout=5).status_code == 404


NAMED_RULES_DRAFT = """package gateway

default draft_allow := false

draft_allow if input.subject.authenticated

default draft_admin := false

draft_admin if "admin" in input.subject.roles

draft_roles contains role if some role in input.subject.roles

draft_never contains role if {
	some role in input.subject.roles
	role == "nobody"
}

decision := {"allow": draft_allow, "status": 200, "reason": "drafted"}
"""


def test_playground_names_the_rules_that_fired(ui_pdp, token):
    """Each named rule evaluated for the input: true or non-empty fired, false or empty did not."""
    admin = {"Authorization": "Bearer " + token()}
    url = ui_pdp.url + "/ui/api/playground"
    user_input = requests.get(url + "/samples", headers=admin, timeout=5).json()["samples"]["user GET /api/v1/sessions"]
    doc = requests.post(
        url,
        json={"input": user_input, "draft": {"gateway/decision.rego": NAMED_RULES_DRAFT}},
        headers=admin,
        timeout=20,
    ).json()
    assert doc["ok"] and doc["agree"] is True and doc["decision"]["reason"] == "drafted", doc
    fired, not_fired = set(doc["rules"]), set(doc["rules_not_fired"])
    assert {"gateway.draft_allow", "gateway.draft_roles", "gateway.decision"} <= fired
    assert {"gateway.draft_admin", "gateway.draft_never"} <= not_fired
    assert not fired & not_fired
    # Plain data (data.json's gateway.settings) is not a rule.
    assert not any(name.startswith("gateway.settings") for name in fired | not_fired)
    # A draft OPA cannot compile is said so on both sides, not a 500.
    bad = requests.post(
        url,
        json={"input": user_input, "draft": {"gateway/decision.rego": "package gateway\n\nx := y\n"}},
        headers=admin,
        timeout=20,
    )
    assert bad.status_code == 200 and bad.json()["ok"] is False and bad.json()["stage"] == "compile"
