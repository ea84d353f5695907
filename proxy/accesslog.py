"""One JSON line per request on stdout, with secrets redacted."""

import json
import os
import time

# One list of secret parameter names for the proxy's log and the PDP's input and decision log.
from servicekit.secret_params import redact_query

__all__ = ["AccessLog", "redact_query"]


class AccessLog:
    """Writes whole lines with one os.write, so lines from several workers never interleave."""

    def __init__(self, enabled: bool, fd: int = 1):
        self._enabled = enabled
        self._fd = fd

    @property
    def enabled(self) -> bool:
        return self._enabled

    def write(self, record: dict) -> None:
        if not self._enabled:
            return
        record["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        try:
            os.write(self._fd, line.encode("utf-8", "replace"))
        except OSError:
            pass
