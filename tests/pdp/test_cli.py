"""Commands for policy authors: pdp check, pdp test (the pinned opa test), pdp eval (the serving engine)."""

import json
import shutil
import subprocess
import sys

from tests.conftest import FIXTURE_POLICIES


def pdp(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pdp", *args], capture_output=True, text=True, input=stdin, timeout=60)


def test_check_ok():
    out = pdp("check", str(FIXTURE_POLICIES))
    assert out.returncode == 0 and out.stdout.startswith("ok: 1 modules, 1 test modules")


def test_check_reports_unsupported_builtin(tmp_path):
    (tmp_path / "p" / "gateway").mkdir(parents=True)
    (tmp_path / "p" / "gateway" / "decision.rego").write_text(
        'package gateway\n\ndecision := {"allow": true, "reason": label}\n\nlabel := sprintf("%v", [input.ip])\n'
    )
    out = pdp("check", str(tmp_path / "p"))
    assert out.returncode == 1
    assert "gateway/decision.rego:5:10: unsupported builtin sprintf() in the wasm engine" in out.stderr
    assert "The host implements: time.now_ns, urlquery.encode" in out.stderr


def test_check_reports_a_compile_error_with_file_and_line(tmp_path):
    shutil.copytree(FIXTURE_POLICIES, tmp_path / "p")
    (tmp_path / "p" / "gateway" / "bad.rego").write_text("package gateway\n\nx := count(1, 2)\n")
    out = pdp("check", str(tmp_path / "p"))
    assert out.returncode == 1
    assert out.stderr.startswith("gateway/bad.rego:3: count: arity mismatch"), out.stderr


def test_check_with_a_broken_test_module_fails(tmp_path):
    shutil.copytree(FIXTURE_POLICIES, tmp_path / "p")
    (tmp_path / "p" / "gateway" / "broken_test.rego").write_text("package gateway_broken_test\n\ntest_x if {\n")
    out = pdp("check", str(tmp_path / "p"))
    assert out.returncode == 1 and "gateway/broken_test.rego:" in out.stderr


def test_test_runs_every_test_rule():
    out = pdp("test", "-v", str(FIXTURE_POLICIES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "data.gateway_test.test_public_allowed: PASS" in out.stdout
    assert "PASS: 4/4" in out.stdout  # opa test's own report


def test_test_reports_failures(tmp_path):
    shutil.copytree(FIXTURE_POLICIES, tmp_path / "p")
    (tmp_path / "p" / "gateway" / "wrong_test.rego").write_text(
        "package gateway_wrong_test\n\nimport data.gateway\n\n"
        "test_admin_for_everyone if "
        '{\n\tgateway.decision.allow with input as {"request": {"method": "POST", "parsed_path": ["admin"]}, '
        '"subject": {"authenticated": true, "sub": "x", "roles": []}}\n}\n'
    )
    out = pdp("test", str(tmp_path / "p"))
    assert out.returncode == 1
    assert "data.gateway_wrong_test.test_admin_for_everyone: FAIL" in out.stdout
    assert "FAIL: 1/5" in out.stdout


def test_eval_prints_the_decision(tmp_path):
    doc = {
        "request": {"method": "GET", "parsed_path": ["private"]},
        "subject": {"authenticated": True, "sub": "e", "roles": ["user"]},
    }
    out = pdp("eval", "--input", "-", "--policies", str(FIXTURE_POLICIES), stdin=json.dumps(doc))
    assert out.returncode == 0
    printed = json.loads(out.stdout)
    assert printed["engine"] == "wasm"
    assert printed["result"]["allow"] is True and printed["result"]["headers"]["x-user-id"] == "e"


def test_eval_uses_the_serving_engine(tmp_path, opa_server):
    doc = {
        "request": {"method": "GET", "parsed_path": ["private"]},
        "subject": {"authenticated": True, "sub": "e", "roles": ["user"]},
    }
    out = subprocess.run(
        [sys.executable, "-m", "pdp", "eval", "--input", "-", "--policies", str(FIXTURE_POLICIES)],
        capture_output=True,
        text=True,
        input=json.dumps(doc),
        timeout=60,
        env={**__import__("os").environ, "PDP_ENGINE": "opa", "OPA_URL": opa_server.url},
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["engine"] == "opa" and printed["result"]["headers"]["x-user-id"] == "e"


def test_eval_bad_input_is_one_clear_line():
    out = pdp("eval", "--input", "-", "--policies", str(FIXTURE_POLICIES), stdin="{nope")
    assert out.returncode == 2 and out.stderr.startswith("pdp eval: cannot read input")
