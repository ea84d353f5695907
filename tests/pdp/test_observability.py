"""Metrics, the decision log and structured logs."""

import json

import requests


def decision_lines(server):
    return [json.loads(line) for line in server.output().splitlines() if line.startswith('{"decision_id"')]


def test_metrics_count_decisions_across_workers(pdp_factory):
    server = pdp_factory(workers=2)
    for _ in range(20):
        requests.post(server.url + "/v1/check", json={"request": {"method": "GET", "path": "/public"}}, timeout=5)
    for _ in range(5):
        requests.post(server.url + "/v1/check", json={"request": {"method": "GET", "path": "/private"}}, timeout=5)
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert 'lucid_pdp_decisions_total{reason="ok",result="allow"} 20.0' in text
    assert 'lucid_pdp_decisions_total{reason="authentication_required",result="deny"} 5.0' in text
    assert "lucid_pdp_policy_eval_seconds_bucket" in text and "lucid_pdp_decision_seconds_count 25.0" in text


def test_the_metrics_folder_the_pdp_made_is_gone_after_it_stops(pdp_factory, tmp_path):
    """`pdp serve` keeps its workers' metrics in a folder of its own under TMPDIR and
    removes it when it stops (one left per start used to pile up in /tmp)."""
    server = pdp_factory(workers=2, TMPDIR=str(tmp_path))
    requests.post(server.url + "/v1/check", json={"request": {"method": "GET", "path": "/public"}}, timeout=5)
    made = list(tmp_path.glob("pdp-metrics-*"))
    assert len(made) == 1 and list(made[0].glob("*.db")), made
    assert server.stop() == 0
    assert not made[0].exists()


def test_decision_log_masks_credentials(pdp_factory, mint):
    server = pdp_factory()
    token = mint("alice", ["user"])
    requests.post(
        server.url + "/v1/check",
        timeout=5,
        headers={"X-Request-ID": "req-42"},
        json={
            "request": {
                "method": "GET",
                "path": "/private/x?access_token=SECRET1&page=2",
                "headers": {"authorization": "Bearer " + token, "cookie": "session=SECRET2", "x-other": "kept"},
            }
        },
    )
    text = server.output()
    assert token not in text and "SECRET1" not in text and "SECRET2" not in text
    entry = [e for e in decision_lines(server) if e["request_id"] == "req-42"][0]
    assert entry["path"] == "/private/x" and entry["result"] == {"allow": True, "status": 200, "reason": "ok"}
    assert entry["input"]["request"]["query"] == {"page": ["2"]}
    assert entry["input"]["request"]["headers"] == {"x-other": "kept"}
    assert entry["input"]["subject"]["sub"] == "alice" and "claims" not in entry["input"]["subject"]
    assert entry["policy_revision"].startswith("sha256:") and entry["eval_ms"] >= 0


def test_decision_log_is_kept_at_log_level_warning(pdp_factory):
    # DECISION_LOG alone switches the decision log; a quieter LOG_LEVEL must not drop it.
    server = pdp_factory(LOG_LEVEL="warning")
    for i in range(5):
        requests.post(
            server.url + "/v1/check",
            headers={"X-Request-ID": f"quiet-{i}"},
            json={"request": {"method": "GET", "path": "/public"}},
            timeout=5,
        )
    logged = {e["request_id"] for e in decision_lines(server)}
    assert {f"quiet-{i}" for i in range(5)} <= logged


def test_decision_log_off_and_sampled(pdp_factory):
    off = pdp_factory(DECISION_LOG="off")
    sampled = pdp_factory(DECISION_LOG="0.5")
    for server in (off, sampled):
        for _ in range(60):
            requests.post(server.url + "/v1/check", json={"request": {"method": "GET", "path": "/public"}}, timeout=5)
    assert decision_lines(off) == []
    assert 5 < len(decision_lines(sampled)) < 55


def test_logs_are_json_with_request_id(pdp_factory, policy_copy):
    folder = policy_copy()
    server = pdp_factory(POLICY_DIR=folder)
    (folder / "gateway" / "decision.rego").write_text("package gateway\n\ndecision := {\n")
    import time

    time.sleep(1.0)
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith('{"ts"')]
    assert any(doc["level"] == "error" and "gateway/decision.rego" in doc["msg"] for doc in lines)


def test_memo_keyed_by_what_the_policy_reads(pdp_factory, mint):
    server = pdp_factory(workers=1)
    token = mint("memo", ["user"])
    for i in range(10):
        # user-agent differs every time, but the policy does not read it
        requests.post(
            server.url + "/v1/check",
            timeout=5,
            json={
                "request": {
                    "method": "GET",
                    "path": "/private/a",
                    "headers": {"authorization": "Bearer " + token, "user-agent": f"ua-{i}"},
                }
            },
        )
    # a header the policy reads is part of the key
    for tenant in ("a", "b"):
        requests.post(
            server.url + "/v1/check",
            timeout=5,
            json={"request": {"method": "GET", "path": "/tenant/a", "headers": {"x-tenant": tenant}}},
        )
    text = requests.get(server.url + "/metrics", timeout=5).text
    assert 'lucid_pdp_memo_lookups_total{result="hit"} 9.0' in text
    assert 'lucid_pdp_memo_lookups_total{result="miss"} 3.0' in text
