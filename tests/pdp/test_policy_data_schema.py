"""The gateway policy's data.json is checked strictly when the policy loads: a typo in a
table the Rego reads is one line naming the file, the key path and what was expected."""

import json
import shutil
import subprocess
import sys

import pytest

from pdp.policy.bundle import load_bundle
from pdp.policy.errors import PolicyError
from tests.support.processes import ROOT

SHIPPED = ROOT / "policies"
GOOD_SECRET = "x" * 40


def broken_copy(tmp_path, change):
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED, target)
    data_file = target / "gateway" / "data.json"
    data = json.loads(data_file.read_text())
    change(data)
    data_file.write_text(json.dumps(data, indent=1))
    return target


BAD = [
    (
        lambda d: d["plans"]["pro"].update(daly=5),
        "gateway/data.json: plans.pro.daly: unknown key (expected one of daily, monthly)",
    ),
    (
        lambda d: d.update(acces=d.pop("access")),
        "gateway/data.json: acces: unknown key (expected one of api_prefix, endpoints, access, plans, default_plan, "
        "brute_force_limit, settings)",
    ),
    (
        lambda d: d["plans"]["pro"].update(daily="20000"),
        "gateway/data.json: plans.pro.daily: expected an integer, at least 0, got '20000' (a string)",
    ),
    (
        lambda d: d["access"].update({"users.read": "admin"}),
        'gateway/data.json: access["users.read"]: expected one of anyone, authenticated, mfa, admin_or_self, signup, '
        "or a non-empty list of roles, got 'admin' (a string)",
    ),
    (
        lambda d: d["access"].update({"users.read": ["admin", "bad role"]}),
        "gateway/data.json: access[\"users.read\"][1]: expected a role name, got 'bad role' (a string)",
    ),
    (
        lambda d: d.update(default_plan="gold"),
        "gateway/data.json: default_plan: expected one of the plans (free, pro, enterprise), got 'gold'",
    ),
    (
        lambda d: d["endpoints"]["users"].update({"get": "users.list"}),
        "gateway/data.json: endpoints.users.get: bad key: expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
    ),
    (
        lambda d: d["endpoints"].update({"/users": {"GET": "users.list"}}),
        'gateway/data.json: endpoints["/users"]: bad key: expected a path template below api_prefix',
    ),
    (
        lambda d: d["brute_force_limit"].pop("burst"),
        "gateway/data.json: brute_force_limit.burst: required (expected an integer, at least 1)",
    ),
    (
        lambda d: d["settings"].update(signup_mode="closed"),
        "gateway/data.json: settings.signup_mode: expected one of open, admin, got 'closed' (a string)",
    ),
    (
        lambda d: d["settings"].update(rate_limit_enabled="false"),
        "gateway/data.json: settings.rate_limit_enabled: expected true or false, got 'false' (a string)",
    ),
    (
        lambda d: d.update(api_prefix="api/v1"),
        "gateway/data.json: api_prefix: expected a non-empty list (each a path segment), got 'api/v1' (a string)",
    ),
]


@pytest.mark.parametrize("change,expected", BAD, ids=[e.split(": ")[1] for _, e in BAD])
def test_a_bad_data_file_is_refused_with_file_key_and_expectation(tmp_path, change, expected):
    with pytest.raises(PolicyError) as caught:
        load_bundle(broken_copy(tmp_path, change))
    assert str(caught.value).startswith(expected), str(caught.value)
    assert "\n" not in str(caught.value)


def test_pdp_serve_stops_with_one_line(tmp_path):
    policies = broken_copy(tmp_path, lambda d: d["plans"]["pro"].update(daly=5))
    proc = subprocess.run(
        [sys.executable, "-m", "pdp", "serve"],
        cwd=ROOT,
        env={"JWT_SECRET_KEY": GOOD_SECRET, "POLICY_DIR": str(policies), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pdp: POLICY_DIR: gateway/data.json: plans.pro.daly: unknown key (expected one of daily, monthly)"
    ]


def test_the_shipped_data_fits_and_other_policies_are_not_held_to_it(tmp_path):
    assert load_bundle(SHIPPED).data["gateway"]["default_plan"] == "free"
    # A policy of one's own in package gateway, with data of its own, is not the shipped layout.
    own = tmp_path / "own" / "gateway"
    own.mkdir(parents=True)
    (own / "decision.rego").write_text('package gateway\n\ndecision := {"allow": false}\n')
    (own / "data.json").write_text('{"grants": {"alice": ["read"]}}')
    assert load_bundle(tmp_path / "own").data["gateway"]["grants"] == {"alice": ["read"]}


def test_a_root_data_file_is_checked_under_its_gateway_key(tmp_path):
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "decision.rego").write_text("package gateway\n\ndecision := {}\n")
    (tmp_path / "data.json").write_text('{"gateway": {"plans": {"free": {"weekly": 1}}}}')
    with pytest.raises(PolicyError, match=r"^data.json: gateway.plans.free.weekly: unknown key"):
        load_bundle(tmp_path)


def test_the_policies_readme_carries_the_data_reference_as_generated():
    from pdp.policy.data_schema import GATEWAY_DATA
    from servicekit.schema import markdown_reference

    assert markdown_reference(GATEWAY_DATA) in (ROOT / "policies" / "README.md").read_text()


def test_a_key_written_twice_is_refused(tmp_path):
    # json.loads keeps the last one silently: the first plans table would vanish unseen.
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "decision.rego").write_text("package gateway\n\ndecision := {}\n")
    (tmp_path / "gateway" / "data.json").write_text('{"plans": {"free": {"daily": 1}}, "plans": {}}')
    with pytest.raises(PolicyError) as caught:
        load_bundle(tmp_path)
    assert str(caught.value) == "gateway/data.json: duplicate key 'plans' (expected each key once per object)"
