"""docs/security.md names a test for each defence: every one it names must exist."""
import re

from tests.support.processes import ROOT

_REF = re.compile(r"`((?:tests/[\w/]+\.py)?)::(test_\w+)`")


def named_tests():
    """(file, test) for each reference; `::test_x` alone means the file named before it in that row."""
    refs = []
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        current = None
        for path, test in _REF.findall(line):
            current = path or current
            refs.append((current, test, line[:60]))
    return refs


def test_every_test_the_threat_model_names_exists():
    refs = named_tests()
    assert len(refs) > 20
    missing = []
    for path, test, row in refs:
        source = (ROOT / path).read_text() if path and (ROOT / path).exists() else ""
        if not re.search(rf"^def {test}\(", source, re.M):
            missing.append(f"{path}::{test} (row: {row})")
    assert not missing, "docs/security.md names tests that do not exist:\n" + "\n".join(missing)
