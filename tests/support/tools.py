"""Find the real OPA and Helm binaries; skip without them, but fail under CI=true."""

import os
import shutil
from pathlib import Path

import pytest

_CACHE_BIN = Path.home() / ".cache" / "lucid-gateway" / "tools" / "bin"


def require_tool(name: str) -> str:
    """Returns the path of a tool built by scripts/tools.sh, or skips/fails the test."""
    path = shutil.which(name) or (str(_CACHE_BIN / name) if (_CACHE_BIN / name).exists() else None)
    if path:
        return path
    reason = f"{name} not found (scripts/tools.sh builds it with Go into {_CACHE_BIN})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
