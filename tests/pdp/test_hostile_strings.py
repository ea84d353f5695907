"""No string in the input can change the shape of a decision (issue 7, critical).

Differential: the decision table, and every case again with a hostile string
(quotes, backslashes, U+0000-U+001F, U+2028, 64 KiB strings, JSON fragments)
in sub, roles, plan, a path segment, the query, a header and client_ip, gives
byte-identical decisions (canonical JSON) on the wasm engine (input trimmed as
the PDP does) and on a real OPA server. An echo policy returns its whole input,
so strings the shipped policy does not read are compared too. regopy 1.5.2
failed this: `{"a": input.v}` with v = `q", "b":"c` came back as two keys.
"""

from __future__ import annotations

import json

import pytest

from pdp.app import policy_settings
from pdp.config import load_settings
from pdp.engines.base import InvalidInput
from pdp.engines.opa_server import OpaServerEngine
from pdp.engines.wasm import WasmEngine
from pdp.policy.analysis import input_needs
from pdp.policy.bundle import load_bundle
from tests.conftest import ROOT, SHIPPED_POLICIES
from tests.support.hostile import FIELDS, HOSTILE, LONE_SURROGATES, with_hostile

CASES = [c for c in json.loads((ROOT / "tests" / "data" / "decision_cases.json").read_text()) if "settings" not in c]
ECHO = {
    "gateway/decision.rego": """package gateway

decision := {"input": input, "roles": roles, "sub": sub, "keys": header_names}

default roles := ""

roles := concat(",", input.subject.roles)

default sub := "null"

sub := json.marshal(input.subject.sub)

header_names := [name | some name, _ in object.get(input, ["request", "headers"], {})]
"""
}


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="module")
def opa(opa_binary):
    from tests.support.ports import free_port
    from tests.support.processes import Server

    port = free_port()
    server = Server([opa_binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"], port)
    yield OpaServerEngine(server.url, timeout_s=10)
    server.stop()


@pytest.fixture(scope="module")
def shipped(opa):
    bundle = load_bundle(SHIPPED_POLICIES, policy_settings(load_settings({"JWT_SECRET_KEY": "x" * 32})))
    wasm = WasmEngine()
    return wasm, wasm.compile(bundle), input_needs(bundle.modules, bundle.data), bundle


def _hostile_inputs():
    for i, case in enumerate(CASES):
        for field in FIELDS:
            # Every case, every field, a different hostile string each time: all strings
            # reach all fields across the table without 76 x 7 x 60 evaluations.
            value = HOSTILE[(i * len(FIELDS) + FIELDS.index(field)) % len(HOSTILE)]
            yield f"{case['name']}|{field}", with_hostile(case["input"], field, value)
    for value in HOSTILE:
        for field in FIELDS:
            yield f"allowed-route|{field}|{value[:12]!r}", with_hostile(CASES[0]["input"], field, value)


HOSTILE_INPUTS = list(_hostile_inputs())


def test_every_field_gets_every_hostile_string():
    fields_per_value = {}
    for name, _doc in HOSTILE_INPUTS:
        fields_per_value.setdefault(name.split("|")[1], 0)
    assert set(fields_per_value) == set(FIELDS)
    assert len(HOSTILE) >= 50 and max(len(v.encode()) for v in HOSTILE) >= 65536


def test_shipped_policy_decisions_are_byte_identical_to_opa(opa, shipped):
    wasm, compiled, needs, bundle = shipped
    pushed = opa.compile(bundle)
    differ = []
    for name, doc in [(c["name"], c["input"]) for c in CASES] + HOSTILE_INPUTS:
        ours = wasm.evaluate(compiled, needs.trim(doc))
        theirs = opa.evaluate(pushed, doc)
        if canonical(ours) != canonical(theirs):
            differ.append(name)
    assert differ == []


def test_identity_headers_carry_the_claims_exactly(shipped):
    """The findings of issue 7: a quote in a claim stays inside its string."""
    wasm, compiled, needs, _ = shipped
    base = {
        "request": {"method": "GET", "parsed_path": ["api", "v1", "users", "me"], "client_ip": "10.0.0.1"},
        "subject": {"authenticated": True, "sub": "alice", "roles": ["user"], "plan": "free", "mfa": False},
    }
    for field, value in [
        ("roles", 'user", "x-user-roles":"admin'),
        ("sub", 'victim", "name":"x'),
        ("roles", 'user", "x-user-mfa":"true'),
    ]:
        doc = with_hostile(base, field, value)
        d = wasm.evaluate(compiled, needs.trim(doc))
        assert d["allow"] is True
        assert set(d["headers"]) == {"x-user-id", "x-user-roles", "x-user-plan", "x-user-mfa"}
        assert d["headers"]["x-user-mfa"] == "false"
        assert d["headers"]["x-user-id"] == doc["subject"]["sub"]
        assert d["headers"]["x-user-roles"] == ",".join(doc["subject"]["roles"])
        assert {q["key"] for q in d["quotas"]} == {"user:" + doc["subject"]["sub"]}


def test_client_ip_fragment_cannot_rewrite_a_quota(shipped):
    wasm, compiled, needs, _ = shipped
    doc = {
        "request": {
            "method": "POST",
            "parsed_path": ["api", "v1", "auth", "login"],
            "client_ip": '", "burst":777777, "name":"x',
        },
        "subject": {"authenticated": False},
    }
    d = wasm.evaluate(compiled, needs.trim(doc))
    assert d["quotas"], d
    for q in d["quotas"]:
        assert q["burst"] != 777777 and q["name"] != "x"
        assert q["key"] == 'ip:", "burst":777777, "name":"x'


@pytest.fixture(scope="module")
def echo(opa, tmp_path_factory):
    root = tmp_path_factory.mktemp("echo")
    for name, text in ECHO.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    bundle = load_bundle(root)
    wasm = WasmEngine()
    return wasm, wasm.compile(bundle), opa.compile(bundle)


def test_echo_policy_returns_every_string_intact_on_both_engines(opa, echo):
    """json.marshal is the one place where the two differ, in escaping only: OPA's
    Go code writes <, >, &, U+2028 as \\u escapes and \\f as \\f, its Wasm code
    writes them raw and \\u000c. Both decode to the same string, which is compared;
    the shipped policy marshals only a boolean."""
    wasm, compiled, pushed = echo
    differ = []
    for name, doc in HOSTILE_INPUTS:
        ours, theirs = wasm.evaluate(compiled, doc), opa.evaluate(pushed, doc)
        if canonical(ours["input"]) != canonical(doc):
            differ.append(("not intact", name))
        if json.loads(ours.pop("sub")) != json.loads(theirs.pop("sub")):
            differ.append(("json.marshal decodes differently", name))
        if canonical(ours) != canonical(theirs):
            differ.append(("differs from OPA", name))
    assert differ == []


@pytest.mark.parametrize("value", LONE_SURROGATES, ids=repr)
@pytest.mark.parametrize("field", FIELDS)
def test_lone_surrogates_are_refused_as_input_never_a_decision(echo, shipped, field, value):
    """OPA's Wasm JSON parser aborts on a lone surrogate (OPA's server turns it
    into U+FFFD): the engine refuses the input (the PDP answers 400), and the
    instance pool keeps working."""
    for wasm, compiled in ((echo[0], echo[1]), (shipped[0], shipped[1])):
        doc = with_hostile(CASES[0]["input"], field, value)
        with pytest.raises(InvalidInput):
            wasm.evaluate(compiled, doc)
        assert wasm.evaluate(compiled, CASES[0]["input"]) is not None
