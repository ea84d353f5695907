"""The test run keeps its temporary files under pytest's own folder (tests/conftest.py)."""

import subprocess
import sys
import tempfile
from pathlib import Path


def test_temp_files_of_the_run_and_its_servers_stay_in_the_run_folder(temp_files_in_the_run_folder, redis_server):
    folder = Path(temp_files_in_the_run_folder)
    assert folder.name == "tmp" and folder.parent.name.startswith("pytest-")
    assert Path(tempfile.gettempdir()) == folder
    assert Path(redis_server.log.name).parent == folder  # started after the fixture, like every server
    child = subprocess.run(
        [sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
        capture_output=True, text=True, check=True, timeout=30,
    )
    assert Path(child.stdout.strip()) == folder
