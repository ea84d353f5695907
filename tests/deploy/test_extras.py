"""The proxy runs with only its own dependencies (the `[proxy]` extra), as in its image.

A real venv gets a non-editable install of `.[proxy]` from a copy of the tree
without pdp/ (as Dockerfile.proxy copies it); then every proxy module imports,
`lucid-proxy --check` validates the shipped routes, and none of the PDP's
libraries is there to be imported by accident.
"""

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PDP_ONLY = ("falcon", "gunicorn", "redis", "jwt", "pymongo", "pyotp", "wasmtime", "grpc", "coincurve")


@pytest.fixture(scope="module")
def proxy_venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("extras")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for package in ("servicekit", "proxy"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{src}[proxy]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return python


def test_every_proxy_module_imports_with_only_the_proxy_extra(proxy_venv):
    modules = sorted(f"proxy.{p.stem}" for p in (ROOT / "proxy").glob("*.py") if p.stem != "__main__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "leaked = sorted(m for m in sys.modules if m == 'pdp' or m.startswith('pdp.'))\n"
        "assert not leaked, leaked\n"
    )
    done = subprocess.run([str(proxy_venv), "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("library", PDP_ONLY)
def test_the_pdp_libraries_are_not_installed(proxy_venv, library):
    done = subprocess.run(
        [str(proxy_venv), "-c", f"import {library}"], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


def test_the_installed_proxy_validates_its_shipped_routes(proxy_venv):
    cli = proxy_venv.parent / "lucid-proxy"
    done = subprocess.run([str(cli), "--check"], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stdout + done.stderr


def test_pdp_and_proxy_import_only_servicekit_never_each_other():
    for package, other in (("proxy", "pdp"), ("pdp", "proxy"), ("servicekit", "pdp"), ("servicekit", "proxy")):
        for path in (ROOT / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                assert not stripped.startswith((f"from {other}.", f"from {other} ", f"import {other}")), (
                    f"{path.relative_to(ROOT)} imports {other}: {stripped}"
                )
