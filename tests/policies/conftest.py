"""Fixtures for the policy tests: the case table, a real OPA server and the wasm engine."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
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
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*.rego"))
        if p.name.endswith("_test.rego") == tests
    }


def rego_test_names(root: Path = POLICIES) -> list[str]:
    names = set()
    for source in rego_files(root, tests=True).values():
        if re.search(r"^package gateway_test$", source, re.M):
            names.update(_TEST_RULE.findall(source))
    return sorted(names)


class Wasm:
    """The shipped policy compiled once to Wasm by OPA and run in-process, as the PDP does."""

    def __init__(self, settings: dict | None = None, root: Path = POLICIES):
        from pdp.engines.wasm import WasmEngine
        from pdp.policy.bundle import load_bundle

        bundle = load_bundle(root)
        if settings is not None:
            bundle.data["gateway"]["settings"] = settings
        self._engine = WasmEngine()
        self._compiled = self._engine.compile(bundle)

    def decide(self, input_doc: dict):
        return self._engine.evaluate(self._compiled, input_doc)


@pytest.fixture(scope="session")
def shipped_opa_server(opa_binary):
    """A real OPA server on the shipped policies/ (tests included, as `opa run` loads them)."""
    port = free_port()
    server = Server(
        [
            opa_binary,
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--log-level",
            "error",
            "--skip-version-check",
            str(POLICIES),
        ],
        port,
    )
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


def wasm_decisions(cases: list[dict]) -> dict[str, dict]:
    engines: dict[str, Wasm] = {}
    found = {}
    for case in cases:
        key = json.dumps(case.get("settings"), sort_keys=True)
        if key not in engines:
            engines[key] = Wasm(case.get("settings"))
        found[case["name"]] = engines[key].decide(case["input"])
    return found


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
