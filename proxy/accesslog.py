"""One JSON line per request on stdout, with secrets redacted."""
import json
import os
import re
import time

# Query parameters whose values are credentials or one-time secrets.
_SECRET_PARAM = re.compile(
    r"(?i)^(access_token|id_token|refresh_token|token|jwt|api_key|apikey|key|secret|password|passwd|pwd"
    r"|auth|authorization|code|sig|signature|session|sessionid|x-amz-signature|credential)$")


def redact_query(query: str) -> str:
    """The query with token-like parameter values replaced by REDACTED."""
    if not query:
        return ""
    parts = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        if sep and (_SECRET_PARAM.match(name) or "token" in name.lower() or "secret" in name.lower()):
            parts.append(f"{name}=REDACTED")
        else:
            parts.append(pair)
    return "&".join(parts)


class AccessLog:
    """Writes whole lines with one os.write, so lines from several workers never interleave."""

    def __init__(self, enabled: bool, fd: int = 1):
        self._enabled = enabled
        self._fd = fd

    def write(self, record: dict) -> None:
        if not self._enabled:
            return
        record["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        try:
            os.write(self._fd, line.encode("utf-8", "replace"))
        except OSError:
            pass
