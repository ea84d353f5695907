"""Commands for policy authors: pdp check, pdp test, pdp eval."""
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
    shutil.copytree(FIXTURE_POLICIES, tmp_path / "p")
    (tmp_path / "p" / "gateway" / "net.rego").write_text('package gateway\n\ninside if net.cidr_contains("10.0.0.0/8", input.ip)\n')
    out = pdp("check", str(tmp_path / "p"))
    assert out.returncode == 1
    assert "gateway/net.rego:3:11: unsupported builtin net.cidr_contains()" in out.stderr


def test_test_runs_every_test_rule():
    out = pdp("test", "-v", str(FIXTURE_POLICIES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "data.gateway_test.test_public_allowed: PASS" in out.stdout
    assert "PASS: 4/4" in out.stdout


def test_test_reports_failures(tmp_path):
    shutil.copytree(FIXTURE_POLICIES, tmp_path / "p")
    (tmp_path / "p" / "gateway" / "wrong_test.rego").write_text(
        'package gateway_wrong_test\n\nimport data.gateway\n\n'
        'test_admin_for_everyone if {\n\tgateway.decision.allow with input as {"request": {"method": "POST", "parsed_path": ["admin"]}, '
        '"subject": {"authenticated": true, "sub": "x", "roles": []}}\n}\n')
    out = pdp("test", str(tmp_path / "p"))
    assert out.returncode == 1
    assert "gateway/wrong_test.rego:5: data.gateway_wrong_test.test_admin_for_everyone: FAIL" in out.stdout
    assert "FAIL: 1/5" in out.stdout


def test_eval_prints_the_decision(tmp_path):
    doc = {"request": {"method": "GET", "parsed_path": ["private"]}, "subject": {"authenticated": True, "sub": "e", "roles": ["user"]}}
    out = pdp("eval", "--input", "-", "--policies", str(FIXTURE_POLICIES), stdin=json.dumps(doc))
    assert out.returncode == 0
    result = json.loads(out.stdout)["result"]
    assert result["allow"] is True and result["headers"]["x-user-id"] == "e"


def test_eval_bad_input_is_one_clear_line():
    out = pdp("eval", "--input", "-", "--policies", str(FIXTURE_POLICIES), stdin="{nope")
    assert out.returncode == 2 and out.stderr.startswith("pdp eval: cannot read input")
