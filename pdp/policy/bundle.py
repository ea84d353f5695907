"""A policy bundle read from a folder: .rego modules and data.json files.

Follows OPA's bundle layout, so `opa run policies/` and `opa test policies/`
see exactly what the PDP serves: `a/b/data.json` becomes `data.a.b`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from .errors import PolicyError

_MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PolicyBundle:
    root: str
    modules: dict[str, str]        # relative path -> source (no *_test.rego)
    test_modules: dict[str, str]   # relative path -> source of *_test.rego
    data: dict
    revision: str                  # "sha256:<hex>" over every file's path and content

    @property
    def all_modules(self) -> dict[str, str]:
        return {**self.modules, **self.test_modules}


def policy_files(root: str | os.PathLike) -> list[Path]:
    """Every .rego and data.json under root, sorted, skipping hidden folders."""
    base = Path(root)
    if not base.is_dir():
        raise PolicyError(f"policy folder {str(base)!r} does not exist")
    found = []
    # followlinks: a Kubernetes ConfigMap volume is a tree of symlinks (..data/...).
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".rego") or name == "data.json":
                found.append(Path(dirpath) / name)
    return found


def fingerprint(root: str | os.PathLike) -> tuple:
    """A cheap change detector (names, sizes, mtimes) for hot reload polling."""
    try:
        return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in policy_files(root))
    except (OSError, PolicyError):
        return ()


def load_bundle(root: str | os.PathLike, settings_overlay: dict | None = None) -> PolicyBundle:
    """Reads every module and data file; raises PolicyError with file:line on bad data."""
    base = Path(root)
    modules, tests, data = {}, {}, {}
    digest = hashlib.sha256()
    for path in policy_files(base):
        rel = path.relative_to(base).as_posix()
        raw = path.read_bytes()
        if len(raw) > _MAX_FILE_BYTES:
            raise PolicyError(f"file larger than {_MAX_FILE_BYTES} bytes", rel)
        digest.update(rel.encode() + b"\0" + raw + b"\0")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError("not UTF-8", rel) from None
        if rel.endswith(".rego"):
            (tests if rel.endswith("_test.rego") else modules)[rel] = text
        else:
            _merge_data(data, rel, text)
    if not modules:
        raise PolicyError(f"no .rego modules in {str(base)!r}")
    if settings_overlay:
        gateway = data.setdefault("gateway", {})
        gateway["settings"] = {**gateway.get("settings", {}), **settings_overlay}
        digest.update(json.dumps(settings_overlay, sort_keys=True).encode())
    return PolicyBundle(str(base), modules, tests, data, "sha256:" + digest.hexdigest()[:16])


def _merge_data(data: dict, rel: str, text: str) -> None:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise PolicyError(err.msg, f"{rel}:{err.lineno}:{err.colno}") from None
    if not isinstance(doc, dict):
        raise PolicyError("a data.json file must hold a JSON object", rel)
    node = data
    for part in Path(rel).parent.parts:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise PolicyError(f"data path {part!r} conflicts with a value", rel)
    for key, value in doc.items():
        if key in node and isinstance(node[key], dict) and isinstance(value, dict):
            node[key] = {**node[key], **value}
        else:
            node[key] = value
