"""Run wrk against one URL and read its numbers (req/s, p50, p99, errors)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import tempfile

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


@dataclasses.dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int

    def row(self) -> str:
        return f"{self.name:<44} {self.rps:>10.0f} {self.p50_ms:>9.2f} {self.p99_ms:>9.2f} {self.errors:>7}"


HEADER = f"{'target':<44} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"


def lua_for(method: str, body: dict | None, headers: dict) -> str:
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(json.dumps(body))}")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    for name, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _wrk_argv(script: str, url: str, seconds: int, connections: int, threads: int) -> list:
    return [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        script,
        url,
    ]


def run(
    name: str,
    url: str,
    seconds: int,
    connections: int,
    threads: int = 2,
    method: str = "GET",
    body: dict | None = None,
    headers: dict | None = None,
) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua_for(method, body, headers or {}))
    argv = _wrk_argv(script.name, url, seconds, connections, threads)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    return parse(name, out)


def cycled_lua(routes: list[tuple[str, str, str]], template: str, items: list[str]) -> str:
    """A wrk script whose request i is routes[i % m] (method, path, parsed path as JSON)
    with body template, where {method}, {path}, {parsed} and {item} are replaced, {item}
    by items[i % n]: with m coprime to n, one body comes back only every m*n requests."""
    rows = ",".join("{%s,%s,%s}" % tuple(json.dumps(x) for x in r) for r in routes)
    values = ",\n".join(json.dumps(v) for v in items)
    return (
        f"local routes = {{{rows}}}\nlocal items = {{\n{values}\n}}\n"
        f"local template = {json.dumps(template)}\n"
        "local i = 0\n"
        "function init(args) i = math.random(0, #items * #routes) end\n"
        "local function put(text, key, value)\n"
        "  local at = text:find(key, 1, true)\n"
        "  if not at then return text end\n"
        "  return text:sub(1, at - 1) .. value .. text:sub(at + #key)\n"
        "end\n"
        "function request()\n"
        "  i = i + 1\n"
        "  local r = routes[i % #routes + 1]\n"
        "  local body = put(put(put(put(template, '{method}', r[1]), '{path}', r[2]), '{parsed}', r[3]),\n"
        "                   '{item}', items[i % #items + 1])\n"
        "  return wrk.format('POST', nil, {['Content-Type'] = 'application/json'}, body)\n"
        "end\n"
    )


def run_script(name: str, url: str, seconds: int, connections: int, script_text: str, threads: int = 2) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(script_text)
    argv = _wrk_argv(script.name, url, seconds, connections, threads)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if "Requests/sec" not in done.stdout:
        raise RuntimeError(f"wrk failed for {name}: {(done.stdout + done.stderr)[-1500:]}")
    return parse(name, done.stdout)


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse(name: str, out: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return Result(name, rps, p50, p99, errors, total)
