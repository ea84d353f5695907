"""Static checks of our own Python: no undefined names, no unused imports or variables."""
import subprocess
import sys

from tests.support.processes import ROOT


def test_pyflakes_is_clean():
    folders = ["pdp", "proxy", "servicekit", "bench", "tests", "devenv"]
    out = subprocess.run([sys.executable, "-m", "pyflakes", *folders], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
