"""Builtins that OPA's Wasm target leaves to the host, implemented here.

OPA compiles most builtins into the module; a few (sprintf, time.*,
uuid.*, io.jwt.*, ...) become calls to `opa_builtinN` that the host must
answer. Only the ones below are answered; a policy that calls any other is
refused at load with file:line (pdp/engines/wasm.py). Each one matches OPA's
Go implementation exactly (the differential tests compare with real OPA).
"""

from __future__ import annotations

import time
from urllib.parse import quote_plus

from .wasm_abi import HostBuiltinError


def _now_ns() -> int:
    return time.time_ns()


def _urlquery_encode(value) -> str:
    # Go's url.QueryEscape: everything but [A-Za-z0-9-_.~] is %XX, space is '+'.
    if not isinstance(value, str):
        raise HostBuiltinError("operand 1 must be a string")
    return quote_plus(value, safe="")


HOST_BUILTINS = {
    "time.now_ns": _now_ns,
    "urlquery.encode": _urlquery_encode,
}
