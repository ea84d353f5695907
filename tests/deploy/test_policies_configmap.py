"""The PDP reading policies from a ConfigMap volume, as the chart mounts them.

The chart maps `policies.files` keys to sub-folders (gateway/decision.rego) and
mounts the volume whole (no subPath), so edits arrive by the kubelet's atomic
symlink swap. These tests lay out that exact tree and run the PDP's own loader
and CLI on it.
"""

import subprocess
import sys

import pytest
import yaml

from tests.support.processes import ROOT

from . import configmap_volume
from .conftest import CI_VALUES

pytest.importorskip("pdp.policy.bundle", reason="the PDP is not merged into this tree yet")
from pdp.policy.bundle import fingerprint, load_bundle  # noqa: E402

SOURCE = ROOT / "policies" if (ROOT / "policies" / "gateway").is_dir() else ROOT / "tests" / "fixtures" / "policies"


@pytest.fixture
def volume(tmp_path):
    path = tmp_path / "policies"
    configmap_volume.write(path, configmap_volume.read_tree(SOURCE))
    return path


def test_the_emulated_volume_has_the_kubelet_layout(volume):
    assert (volume / "..data").is_symlink()
    assert (volume / "gateway").is_symlink()
    assert [p.name for p in volume.iterdir() if p.name.startswith("..2")]
    assert "\npackage gateway\n" in (volume / "gateway" / "decision.rego").read_text()


def test_pdp_loads_each_module_once_with_the_source_revision(volume):
    source, mounted = load_bundle(SOURCE), load_bundle(volume)
    assert sorted(mounted.modules) == sorted(source.modules)
    # Same paths and bytes: every PDP replica reports the revision the author built.
    assert mounted.revision == source.revision


def test_an_atomic_configmap_update_is_seen_by_hot_reload(volume):
    files = configmap_volume.read_tree(SOURCE)
    before = fingerprint(volume)
    rel = next(r for r in sorted(files) if r.endswith(".rego") and not r.endswith("_test.rego"))
    files[rel] += "\n# edited through the ConfigMap\n"
    configmap_volume.write(volume, files)
    assert fingerprint(volume) != before
    assert load_bundle(volume).modules[rel].endswith("# edited through the ConfigMap\n")


def test_pdp_check_accepts_the_mounted_policies(volume):
    proc = subprocess.run(
        [sys.executable, "-m", "pdp", "check", str(volume)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")


@pytest.mark.parametrize(
    "values_file",
    [f for f in CI_VALUES if yaml.safe_load(f.read_text()).get("policies", {}).get("files")],
    ids=lambda f: f.name,
)
def test_example_policies_in_ci_values_compile(values_file, tmp_path):
    files = yaml.safe_load(values_file.read_text())["policies"]["files"]
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "pdp", "check", str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
