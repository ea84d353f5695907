"""The on-disk layout the kubelet gives a ConfigMap volume, for tests without a cluster.

The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) writes every
update into a fresh hidden folder `..<timestamp>`, points the `..data` symlink
at it with one rename, and exposes each top-level entry as a symlink through
`..data`: `gateway -> ..data/gateway`. Readers must follow symlinked folders
and skip the hidden ones, or they see nothing (or everything twice).
"""

import os
import shutil
import time
from pathlib import Path


def write(volume: Path, files: dict) -> None:
    """Publishes {relative path: text} into volume the way the kubelet does."""
    volume.mkdir(parents=True, exist_ok=True)
    stamp = volume / (time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{time.time_ns() % 10**9:09d}")
    for rel, text in files.items():
        target = stamp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    tmp_link = volume / "..data_tmp"
    tmp_link.symlink_to(stamp.name)
    os.rename(tmp_link, volume / "..data")
    for top in {rel.split("/", 1)[0] for rel in files}:
        link = volume / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for stale in {p.name for p in volume.iterdir()} - {rel.split("/", 1)[0] for rel in files} - {"..data", stamp.name}:
        path = volume / stale
        if path.is_symlink() and not stale.startswith(".."):
            path.unlink()
    if old:
        shutil.rmtree(volume / old)


def read_tree(root: Path) -> dict:
    """{relative path: text} of every file under a plain folder."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}
