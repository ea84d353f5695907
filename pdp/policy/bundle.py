"""A policy bundle read from a folder (.rego modules and data.json files), or
from a bundle.tar.gz built by `opa build -t wasm` (policy.wasm, data.json and
the .rego sources, OPA's bundle convention).

Follows OPA's bundle layout, so `opa run policies/` and `opa test policies/`
see exactly what the PDP serves: `a/b/data.json` becomes `data.a.b`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from .data_schema import check_data_file
from .errors import PolicyError

_MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class PolicyBundle:
    root: str
    modules: dict[str, str]  # relative path -> source (no *_test.rego)
    test_modules: dict[str, str]  # relative path -> source of *_test.rego
    data: dict
    revision: str  # "sha256:<hex>" over every file's path and content
    wasm: bytes | None = None  # a prebuilt policy.wasm (from a bundle.tar.gz), else None

    @property
    def all_modules(self) -> dict[str, str]:
        return {**self.modules, **self.test_modules}


def is_bundle_file(root: str | os.PathLike) -> bool:
    return str(root).endswith(".tar.gz") and Path(root).is_file()


def policy_files(root: str | os.PathLike) -> list[Path]:
    """Every .rego and data.json under root, sorted, skipping hidden folders
    (or the bundle file itself)."""
    base = Path(root)
    if is_bundle_file(base):
        return [base]
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
    if is_bundle_file(base):
        return load_bundle_file(base, settings_overlay)
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
    _overlay(data, digest, settings_overlay)
    return PolicyBundle(str(base), modules, tests, data, "sha256:" + digest.hexdigest()[:16])


def _overlay(data: dict, digest, settings_overlay: dict | None) -> None:
    if settings_overlay:
        gateway = data.setdefault("gateway", {})
        gateway["settings"] = {**gateway.get("settings", {}), **settings_overlay}
        digest.update(json.dumps(settings_overlay, sort_keys=True).encode())


def load_bundle_file(path: Path, settings_overlay: dict | None = None) -> PolicyBundle:
    """A bundle.tar.gz from `opa build -t wasm`: its policy.wasm is served as is;
    its .rego sources (OPA includes them) tell the PDP what input they read."""
    raw = path.read_bytes()
    if len(raw) > _MAX_FILE_BYTES * 4:
        raise PolicyError(f"bundle larger than {_MAX_FILE_BYTES * 4} bytes", path.name)
    modules, tests, data, wasm = {}, {}, {}, None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                name = member.name.lstrip("/")
                name = name[2:] if name.startswith("./") else name
                if not member.isfile() or member.size > _MAX_FILE_BYTES * 4:
                    continue
                content = tar.extractfile(member).read()
                if name == "policy.wasm" or name.endswith("/policy.wasm"):
                    wasm = content
                elif name.endswith(".rego"):
                    text = content.decode("utf-8", "replace")
                    (tests if name.endswith("_test.rego") else modules)[name] = text
                elif name == "data.json" or name.endswith("/data.json"):
                    _merge_data(data, name, content.decode("utf-8", "replace"))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PolicyError(f"not a bundle.tar.gz: {err}", path.name) from None
    if wasm is None:
        raise PolicyError("the bundle holds no policy.wasm (build it with `opa build -t wasm`)", path.name)
    digest = hashlib.sha256(raw)
    _overlay(data, digest, settings_overlay)
    return PolicyBundle(str(path), modules, tests, data, "sha256:" + digest.hexdigest()[:16], wasm)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    """A JSON object whose key appears twice is refused (json keeps the last silently)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"duplicate key {key!r} (expected each key once per object)")
        out[key] = value
    return out


def _merge_data(data: dict, rel: str, text: str) -> None:
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise PolicyError(err.msg, f"{rel}:{err.lineno}:{err.colno}") from None
    except _DuplicateKey as err:
        raise PolicyError(str(err), rel) from None
    if not isinstance(doc, dict):
        raise PolicyError("a data.json file must hold a JSON object", rel)
    check_data_file(Path(rel).parent.parts, doc, rel)
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
