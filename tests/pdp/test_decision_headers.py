"""Headers that come out of a decision are checked before use (issue 7): names
from DECISION_HEADER_NAMES, values without CR, LF or any other control
character. A decision failing the check is denied (503 policy_bad_headers),
logged and counted."""

from __future__ import annotations

import re

import pytest
import requests

from pdp.decision import DEFAULT_HEADERS, HeaderAllowList, from_policy

ALLOW = {"allow": True, "status": 200, "reason": "ok"}


def test_the_shipped_policy_headers_are_allowed_by_default():
    d = from_policy(
        {
            **ALLOW,
            "headers": {"x-user-id": "a", "x-user-roles": "user", "x-user-plan": "free", "x-user-mfa": "false"},
            "response_headers": {"ratelimit-policy": '"p";q=1;w=60', "retry-after": "1"},
        }
    )
    assert d.allow and d.headers["x-user-id"] == "a" and d.response_headers["retry-after"] == "1"
    for name in ("allow", "www-authenticate", "ratelimit", "ratelimit-remaining"):
        assert DEFAULT_HEADERS.allows(name)


@pytest.mark.parametrize(
    "headers",
    [
        {"headers": {"x-user-admin": "1"}},
        {"headers": {"set-cookie": "session=stolen"}},
        {"response_headers": {"location": "https://evil.example"}},
        {"headers": {"x-user-id": "a\r\nx-user-roles: admin"}},
        {"headers": {"x-user-id": "a\nb"}},
        {"headers": {"x-user-id": "a\tb"}},
        {"headers": {"x-user-id": "a\x00"}},
        {"headers": {"x-user-id": "a\x7f"}},
        {"response_headers": {"retry-after": "1\r\n"}},
        {"headers": {"x-user-email": "\u540d@example.com"}},
        {"response_headers": {"www-authenticate": 'Bearer realm="\u0100"'}},
    ],
)
def test_a_bad_header_denies_the_decision(headers):
    d = from_policy({**ALLOW, **headers})
    assert (d.allow, d.status, d.reason) == (False, 503, "policy_bad_headers")
    assert d.headers == {} and d.detail


def test_the_allow_list_is_a_setting_with_prefixes():
    names = HeaderAllowList(("x-tenant", "x-trace-*"))
    assert from_policy({**ALLOW, "headers": {"x-tenant": "t", "x-trace-id": "1"}}, names).allow
    assert from_policy({**ALLOW, "headers": {"x-user-id": "a"}}, names).reason == "policy_bad_headers"


def _count(pdp) -> float:
    m = re.search(
        r'^lucid_pdp_errors_total\{kind="policy_bad_headers"\} ([0-9.e+]+)$',
        requests.get(pdp.url + "/metrics", timeout=5).text,
        re.M,
    )
    return float(m.group(1)) if m else 0.0


def test_the_pdp_denies_logs_and_counts_a_bad_header(pdp_factory, tmp_path):
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "decision.rego").write_text(
        'package gateway\n\ndecision := {"allow": true, "status": 200, "headers": {"x-debug": input.request.path}}\n'
    )
    server = pdp_factory(POLICY_DIR=str(tmp_path), RATE_LIMIT_ENABLED="false")
    body = {"request": {"method": "GET", "path": "/anything"}}
    d = requests.post(server.url + "/v1/check", json=body, timeout=5).json()
    assert (d["allow"], d["status"], d["reason"]) == (False, 503, "policy_bad_headers")
    assert _count(server) == 1
    assert "x-debug" in server.output() and "not in DECISION_HEADER_NAMES" in server.output()

    allowed = pdp_factory(POLICY_DIR=str(tmp_path), RATE_LIMIT_ENABLED="false", DECISION_HEADER_NAMES="x-debug")
    d = requests.post(allowed.url + "/v1/check", json=body, timeout=5).json()
    assert d["allow"] is True and d["headers"] == {"x-debug": "/anything"}


def test_a_latin_1_value_is_allowed():
    # What the proxy can send as is: RFC 9110's obs-text.
    assert from_policy({**ALLOW, "headers": {"x-user-email": "jos\u00e9@example.com"}}).allow
