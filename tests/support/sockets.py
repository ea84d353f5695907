"""Who holds which established TCP connection, from `ss` (iproute2; scripts/bootstrap.sh installs it)."""

import re
import subprocess


def established(ss_filter: str) -> list[set[int]]:
    """For each established TCP socket matching an ss filter ("( sport = :8080 )"),
    the PIDs of the processes holding it (empty while none has accepted it yet)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", ss_filter], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return [{int(pid) for pid in re.findall(r"pid=(\d+)", line)} for line in out.splitlines() if line.strip()]
