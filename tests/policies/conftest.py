"""Fixtures for the policy tests: the case table, a real OPA server and regopy."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import regopy
import requests

from tests.support.ports import free_port
from tests.support.processes import Server

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
CASES_FILE = ROOT / "tests" / "data" / "decision_cases.json"
# Inputs the PDP never builds (a numeric method, no request at all, ...), kept
# apart from the shared table, which the PDP's own tests replay end to end.
MALFORMED_CASES_FILE = ROOT / "tests" / "data" / "malformed_input_cases.json"
DECISION = "gateway/decision"

_TEST_RULE = re.compile(r"^(test_\w+)\b", re.M)


def load_cases(path: Path = CASES_FILE) -> list[dict]:
    return json.loads(path.read_text())


def shipped_data() -> dict:
    return {"gateway": json.loads((POLICIES / "gateway" / "data.json").read_text())}


def rego_files(root: Path = POLICIES, tests: bool = False) -> dict[str, str]:
    """The policy modules, or with tests=True the *_test.rego ones, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.rego"))
            if p.name.endswith("_test.rego") == tests}


def rego_test_names(root: Path = POLICIES) -> list[str]:
    names = set()
    for source in rego_files(root, tests=True).values():
        if re.search(r"^package gateway_test$", source, re.M):
            names.update(_TEST_RULE.findall(source))
    return sorted(names)


class Regopy:
    """The shipped policy compiled once on regopy, as the embedded engine does."""

    def __init__(self, settings: dict | None = None):
        data = shipped_data()
        if settings is not None:
            data["gateway"]["settings"] = settings
        self._interp = regopy.Interpreter()
        for name, source in rego_files().items():
            self._interp.add_module(name, source)
        self._interp.add_data(data)
        self._bundle = self._interp.build(None, [DECISION])
        assert self._bundle.ok()

    def decide(self, input_doc: dict):
        self._interp.set_input(regopy.Input(input_doc))
        out = self._interp.query_bundle_entrypoint(self._bundle, DECISION)
        # Never Output.expressions(), str() or node(): regopy 1.5.2 aborts on
        # undefined and segfaults on errors there.
        assert out.ok(), "regopy failed to evaluate the decision"
        return out.results[0].expressions[0] if out.results and out.results[0].expressions else None


def run_rego_tests_on_regopy(root: Path) -> dict:
    """Evaluates the whole gateway_test package once; returns {rule: value}.

    One query compiles every module once; a query per test would compile them
    all again each time (regopy keeps ~1 MB per compile until the interpreter
    goes). A failing test rule is undefined, so it is absent from the result.
    """
    interp = regopy.Interpreter()
    for name, source in {**rego_files(root), **rego_files(root, tests=True)}.items():
        interp.add_module(name, source)
    interp.add_data({"gateway": json.loads((root / "gateway" / "data.json").read_text())})
    interp.set_input(regopy.Input({}))
    out = interp.query("x := data.gateway_test")
    assert out.ok(), "regopy could not evaluate package gateway_test"
    return out.results[0].bindings["x"]


@pytest.fixture(scope="session")
def shipped_opa_server(opa_binary):
    """A real OPA server on the shipped policies/ (tests included, as `opa run` loads them)."""
    port = free_port()
    server = Server([opa_binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error",
                     "--skip-version-check", str(POLICIES)], port)
    yield server
    server.stop()


def opa_decisions(server: Server, cases: list[dict]) -> dict[str, dict]:
    """Every case's decision from the OPA server, with its settings put in data first."""
    defaults = shipped_data()["gateway"]["settings"]
    session = requests.Session()
    found = {}
    try:
        for case in cases:
            settings = case.get("settings", defaults)
            put = session.put(f"{server.url}/v1/data/gateway/settings", json=settings, timeout=10)
            put.raise_for_status()
            resp = session.post(f"{server.url}/v1/data/gateway/decision", json={"input": case["input"]}, timeout=10)
            resp.raise_for_status()
            found[case["name"]] = resp.json().get("result")
    finally:
        session.put(f"{server.url}/v1/data/gateway/settings", json=defaults, timeout=10)
    return found


def regopy_decisions(cases: list[dict]) -> dict[str, dict]:
    engines: dict[str, Regopy] = {}
    found = {}
    for case in cases:
        key = json.dumps(case.get("settings"), sort_keys=True)
        if key not in engines:
            engines[key] = Regopy(case.get("settings"))
        found[case["name"]] = engines[key].decide(case["input"])
    return found


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
