"""The admin page in a real browser: Debian's chromium driven by playwright-core (tests/ui/admin_page.mjs).

Signs in, watches the live numbers move under generated load, resets a quota,
filters the decision log, runs the playground on the loaded policy, a draft
and a replay, and signs out. Screenshots go to tests/ui/artifacts/ (linked
from docs/operations.md).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", HERE / "artifacts"))
# What admin_page.mjs saves; docs/operations.md links a copy of each (docs/images/).
SCREENSHOTS = ("admin-signin", "admin-live", "admin-decisions", "admin-playground", "admin-playground-engines")
DOCS = HERE.parent.parent / "docs"


def test_operations_doc_links_every_screenshot():
    """Each screenshot the browser test takes is linked from docs/operations.md, and the linked file is there."""
    text = (DOCS / "operations.md").read_text()
    for name in SCREENSHOTS:
        assert f"(images/{name}.png)" in text, name
        assert (DOCS / "images" / f"{name}.png").stat().st_size > 10_000, name


def _require_browser():
    missing = [
        what
        for what, ok in (
            ("chromium (apt package chromium)", Path("/usr/bin/chromium").exists()),
            ("node", shutil.which("node")),
            ("playwright-core (npm ci --prefix tests/ui)", (HERE / "node_modules" / "playwright-core").is_dir()),
        )
        if not ok
    ]
    if missing:
        reason = "browser test needs " + ", ".join(missing) + " (scripts/bootstrap.sh installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def test_admin_page_in_chromium(ui_pdp, token):
    _require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    argv = [
        "node",
        str(HERE / "admin_page.mjs"),
        ui_pdp.url,
        token("root", ["admin"]),
        token("loadgen", ["user"]),
        str(ARTIFACTS),
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=150, cwd=HERE)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["errors"] == [], seen["errors"]
    # Only the expected refusals: "who am I" before sign-in, the wrong token, the browser's favicon guess.
    assert set(seen["failed"]) <= {"401 /ui/api/me", "401 /ui/session", "404 /favicon.ico"}, seen["failed"]
    assert seen["bad_signin"] and seen["who"] == "signed in as root"
    assert seen["session_cookie_http_only"] is True and seen["script_sees_session"] is False
    assert seen["total_after"] >= seen["total_before"] + 60
    assert seen["p99"] != "–" and "allow:ok" in seen["reasons"]
    assert any(d.startswith("redis: ok") for d in seen["deps"]) and any(
        d.startswith("policy: ok") for d in seen["deps"]
    )
    assert "user_per_minute" in seen["quota_before"] and "user_per_minute: 200 left" not in seen["quota_before"]
    assert "user_per_minute: 200 left" in seen["quota_after"]
    assert seen["log_rows"] and set(seen["log_rows"]) == {"loadgen"}
    assert seen["pg_loaded"]["status"] == "200" and "loaded policy sha256:" in seen["pg_loaded"]["meta"]
    assert float(seen["pg_loaded"]["ms"]) > 0 and "evaluated by OPA" in seen["pg_loaded"]["rules"]
    # Columns: engine, how, allow, status, reason, eval ms, timing.
    wasm, opa = seen["pg_engines"]["wasm"], seen["pg_engines"]["opa"]
    assert wasm[0] == "wasm" and wasm[1].startswith("embedded wasm") and wasm[2:5] == ["true", "200", "ok"], wasm
    assert opa[0] == "opa" and opa[1].startswith("opa eval") and opa[2:5] == ["true", "200", "ok"], opa
    assert float(wasm[5]) > 0 and float(opa[5]) > 0 and "timer_rego_query_eval_ns" in opa[6]
    assert seen["pg_engines"]["agree"] == "The engines agree."
    assert {"gateway.decision", "gateway.subject_authenticated"} <= set(seen["pg_engines"]["fired"])
    assert seen["pg_draft"] == {"allow": "false", "reason": "draft says no", "meta": seen["pg_draft"]["meta"]}
    assert seen["pg_draft"]["meta"].startswith("draft draft:")
    assert seen["pg_replay_input_has_token"] is False
    assert seen["signed_out"] is True and seen["reads_after_signout"] == 0
    for name in SCREENSHOTS:
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000, name
