"""docs/metrics.md lists every metric the services export, generated from the code."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_metrics_table_in_the_docs_is_current():
    # A fresh process: the proxy's metrics register on the default registry once.
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "metrics_table.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert table in (ROOT / "docs" / "metrics.md").read_text(), (
        "docs/metrics.md is stale: regenerate it with scripts/metrics_table.py"
    )


def test_every_metric_has_the_one_prefix():
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "metrics_table.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    names = [line.split("`")[1] for line in table.splitlines()[2:]]
    assert names and all(n.startswith("lucid_") for n in names), names
