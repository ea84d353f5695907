"""Compiles a policy bundle to Wasm with the pinned OPA binary (`opa build -t wasm`).

OPA's own compiler produces the code, so the Wasm engine has OPA's semantics
by construction. The modules are written to a private folder first: OPA
compiles exactly the sources the PDP read (and analysed), never a file edited
in between.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..policy.errors import PolicyError, from_opa_output

_CACHE_BIN = Path.home() / ".cache" / "lucid-gateway" / "tools" / "bin" / "opa"
_BUILD_TIMEOUT_S = 120
_MAX_WASM_BYTES = 64 * 1024 * 1024


def find_opa(configured: str) -> str:
    """The OPA binary OPA_BINARY names: a path, or a name on PATH; a developer's
    bare `opa` falls back to the copy scripts/tools.sh built. Raises PolicyError."""
    found = shutil.which(configured)
    if found:
        return found
    if configured == "opa" and os.access(_CACHE_BIN, os.X_OK):
        return str(_CACHE_BIN)
    raise PolicyError(
        f"OPA_BINARY: {configured!r} not found (the wasm engine compiles policies with it; "
        "scripts/tools.sh builds the pinned one)"
    )


def build_wasm(opa: str, modules: dict[str, str], entrypoint: str) -> bytes:
    """policy.wasm for the given modules; PolicyError with file:line on a compile error."""
    with tempfile.TemporaryDirectory(prefix="pdp-wasm-") as tmp:
        out = Path(tmp, "bundle.tar.gz")
        _run_opa(opa, modules, Path(tmp, "src"), ["build", "-t", "wasm", "-e", entrypoint, "-o", str(out), "."])
        return wasm_from_bundle(out.read_bytes())


def check_modules(opa: str, modules: dict[str, str]) -> None:
    """`opa check` over the given modules (tests included); PolicyError with file:line."""
    with tempfile.TemporaryDirectory(prefix="pdp-check-") as tmp:
        _run_opa(opa, modules, Path(tmp, "src"), ["check", "."])


def run_opa_test(opa: str, modules: dict[str, str], data: dict, verbose: bool = False) -> int:
    """`opa test` over the modules and data the PDP read; prints OPA's report, returns its exit code."""
    with tempfile.TemporaryDirectory(prefix="pdp-test-") as tmp:
        src = Path(tmp, "src")
        src.mkdir()
        (src / "data.json").write_text(json.dumps(data), encoding="utf-8")
        for name, text in modules.items():
            path = src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        try:
            return subprocess.run([opa, "test", "."] + (["-v"] if verbose else []), cwd=src, timeout=600).returncode
        except (OSError, subprocess.TimeoutExpired) as err:
            raise PolicyError(f"opa test failed to run: {err.__class__.__name__}: {err}") from None


def _run_opa(opa: str, modules: dict[str, str], src: Path, args: list[str]) -> None:
    # A private copy of exactly what the PDP read: never a file edited since,
    # nor a ConfigMap volume's hidden ..data folders.
    for name, text in modules.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    try:
        # cwd=src so that OPA names files as the PDP does (gateway/decision.rego).
        done = subprocess.run([opa, *args], cwd=src, capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PolicyError(f"opa {args[0]} failed to run: {err.__class__.__name__}: {err}") from None
    if done.returncode != 0:
        raise from_opa_output(done.stderr or done.stdout)


def wasm_from_bundle(raw: bytes) -> bytes:
    """The /policy.wasm of a bundle.tar.gz made by `opa build -t wasm`; raises PolicyError."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.lstrip("./") == "policy.wasm":
                    if member.size > _MAX_WASM_BYTES:
                        raise PolicyError("policy.wasm is larger than 64 MiB")
                    return tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PolicyError(f"not a bundle.tar.gz: {err}") from None
    raise PolicyError("the bundle holds no policy.wasm (build it with `opa build -t wasm`)")
