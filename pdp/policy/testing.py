"""`pdp test`: runs the test_* rules of *_test.rego on the embedded engine, like `opa test`."""
from __future__ import annotations

import dataclasses
import re
import time

import regopy

from ..engines.embedded import new_interpreter
from .analysis import strip_comments_and_strings
from .errors import line_col
from .bundle import load_bundle

_PACKAGE = re.compile(r"^[ \t]*package\s+([\w.]+)", re.M)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.M)


@dataclasses.dataclass
class TestResult:
    package: str
    name: str
    location: str
    passed: bool
    ms: float
    detail: str = ""


# regopy 1.5.2 fails to evaluate any rule that calls a builtin under
# `with input as ...`, yet handles `with data.<x> as ...` correctly. For test
# runs only, `input` is therefore renamed to a data document in every module.
_TEST_INPUT = "data.lucid_test_input"
_INPUT_TOKEN = re.compile(r"(?<![\w.])input\b")


def rename_input(source: str) -> str:
    """Replaces every `input` reference outside comments and strings with data.lucid_test_input."""
    code = strip_comments_and_strings(source)
    out, last = [], 0
    for m in _INPUT_TOKEN.finditer(code):
        out.append(source[last:m.start()])
        out.append(_TEST_INPUT)
        last = m.end()
    out.append(source[last:])
    return "".join(out)


def run_tests(policy_dir: str) -> list[TestResult]:
    bundle = load_bundle(policy_dir)
    interp = new_interpreter(bundle, {name: rename_input(src) for name, src in bundle.all_modules.items()})
    results = []
    for module, source in sorted(bundle.test_modules.items()):
        code = strip_comments_and_strings(source)
        pkg = _PACKAGE.search(code)
        if not pkg:
            continue
        seen = set()
        for m in _TEST_RULE.finditer(code):
            name = m.group(1)
            if name in seen:  # incremental definitions of one test rule
                continue
            seen.add(name)
            line, _ = line_col(code, m.start(1))
            results.append(_run_one(interp, pkg.group(1), name, f"{module}:{line}"))
    return results


def _run_one(interp, package: str, name: str, location: str) -> TestResult:
    started = time.perf_counter()
    try:
        out = interp.query(f"data.{package}.{name}")
        ok = out.ok()
        # Output.results, never Output.expressions(): the latter aborts on undefined.
        values = out.results[0].expressions if ok and out.results else []
        passed = ok and values == [True]
        # Never str()/node() on a failed output: regopy 1.5.2 segfaults there.
        detail = "" if passed else ("undefined" if ok and not values else ("false" if ok else "evaluation error"))
    except regopy.RegoError as err:
        passed, detail = False, str(err).strip().splitlines()[0]
    return TestResult(package, name, location, passed, (time.perf_counter() - started) * 1000, detail)
