"""The version is declared once (servicekit/__init__.py); everything else reads it."""

import tomllib
from pathlib import Path

import yaml

import pdp
import proxy
import servicekit

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_and_both_services_read_the_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "servicekit.__version__"}
    assert pdp.__version__ is servicekit.__version__ and proxy.__version__ is servicekit.__version__


def test_the_chart_ships_this_version_as_its_app_version():
    # Helm cannot import Python: the chart's appVersion is the one copy, checked here.
    chart = yaml.safe_load((ROOT / "helm" / "lucid-gateway" / "Chart.yaml").read_text())
    assert chart["appVersion"] == servicekit.__version__


def test_no_dockerfile_writes_a_version_of_its_own():
    for name in ("Dockerfile.pdp", "Dockerfile.proxy"):
        text = (ROOT / name).read_text()
        assert servicekit.__version__ not in text.replace("import servicekit", ""), name
