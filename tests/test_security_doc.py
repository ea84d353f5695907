"""docs/security.md names a test for each defence: every one it names must exist."""

import re

from tests.support.processes import ROOT

# `tests/x/test_y.py::test_z`, `test_y.py::test_z` (found under tests/), `::test_z` (the file named
# before it in the same row), optionally with a parameter id: `...::test_z[case]`.
_REF = re.compile(r"`((?:[\w/]+/)?test_\w+\.py)?::(test_\w+)(?:\[[^\]`]*\])?`")


def _resolve(name: str):
    if "/" in name:
        return ROOT / name
    found = sorted((ROOT / "tests").rglob(name))
    return found[0] if len(found) == 1 else None


def named_tests():
    """(path, test, row) for each reference in the page."""
    refs = []
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        current = None
        for name, test in _REF.findall(line):
            current = _resolve(name) if name else current
            refs.append((current, test, line[:60]))
    return refs


def test_every_test_the_threat_model_names_exists():
    refs = named_tests()
    assert len(refs) > 20
    missing = []
    for path, test, row in refs:
        source = path.read_text() if path is not None and path.exists() else ""
        if not re.search(rf"^def {test}\(", source, re.M):
            missing.append(f"{path}::{test} (row: {row})")
    assert not missing, "docs/security.md names tests that do not exist:\n" + "\n".join(missing)
