"""Fixtures for the chart tests: the real helm binary, rendering and lookups."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "lucid-gateway"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# preStop sleep is gated on Kubernetes >= 1.30; render for a current cluster.
KUBE_VERSION = "1.31.0"


class Helm:
    """Runs the real helm binary against the chart; every call is bounded in time."""

    def __init__(self, path: str):
        self.path = path

    def run(self, *args, check=True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.path, *args], capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def template_args(self, values_files=(), sets=(), set_strings=(), kube_version=KUBE_VERSION):
        args = ["template", "t", str(CHART), "--namespace", "gw", "--kube-version", kube_version]
        for f in values_files:
            args += ["-f", str(f)]
        for s in sets:
            args += ["--set", s]
        for s in set_strings:
            args += ["--set-string", s]
        return args

    def template_text(self, *a, **kw) -> str:
        return self.run(*self.template_args(*a, **kw)).stdout

    def render(self, *a, **kw) -> "Rendered":
        return Rendered([d for d in yaml.safe_load_all(self.template_text(*a, **kw)) if d])


class Rendered:
    """The objects of one render, with the lookups the tests need."""

    def __init__(self, docs):
        self.docs = docs

    def of_kind(self, kind):
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind, name):
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert found, f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in self.docs]}"
        return found[0]

    def kinds(self):
        return sorted(d["kind"] for d in self.docs)

    def pod_specs(self):
        return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in self.of_kind("Deployment")]


def container(pod_spec, name):
    found = [c for c in pod_spec["containers"] if c["name"] == name]
    assert found, f"no container {name} in {[c['name'] for c in pod_spec['containers']]}"
    return found[0]


def env_of(c) -> dict:
    """name -> the env entry (its value or valueFrom)."""
    return {e["name"]: e for e in c.get("env", [])}


def port_number(pod_spec, port):
    """Resolves a probe's or Service's port (a number or a container port name) in a pod."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for c in pod_spec["containers"] for p in c.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"port name {port!r} matches {numbers} in the pod"
    return numbers[0]


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(require_tool("helm"))


@pytest.fixture(scope="session")
def default_render(helm) -> Rendered:
    return helm.render()


@pytest.fixture(scope="session")
def ci_renders(helm) -> dict:
    """Each ci/*-values.yaml file's name -> its render."""
    return {f.name: helm.render([f]) for f in CI_VALUES}


@pytest.fixture(scope="session")
def notes(helm, tmp_path_factory):
    """notes(*helm args) -> NOTES.txt as rendered. helm template does not print the
    notes, so a copy of the chart carries them in a ConfigMap template instead."""
    import shutil

    chart = tmp_path_factory.mktemp("notes") / "lucid-gateway"
    shutil.copytree(CHART, chart)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    body = "\n".join("    " + line for line in text.splitlines())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n" + body + "\n"
    )

    def _render(*args):
        out = helm.run("template", "t", str(chart), "-s", "templates/zz-notes.yaml", *args).stdout
        return yaml.safe_load(out)["data"]["notes"]

    return _render
