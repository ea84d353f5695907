"""Static facts about the policy modules, read from their source.

- which parts of `input` the policies read, so the engine is given only those
  (every field costs the engine time to parse) and memoized decisions
  are keyed by exactly what was read;
- whether they read a clock or randomness (then decisions are not memoized);
- which functions they call, so unsupported builtins fail the load with file:line.
"""

from __future__ import annotations

import dataclasses
import re

from .errors import line_col

WHOLE = True  # a needs-tree node meaning "the whole subtree"

_REF = re.compile(r'(?<![\w."])input((?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*"(?:[^"\\]|\\.)*"\s*\])*)')
_SEGMENT = re.compile(r'\.\s*([A-Za-z_]\w*)|\[\s*"((?:[^"\\]|\\.)*)"\s*\]')
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_FUNCTION_HEAD = re.compile(r"^[ \t]*([A-Za-z_]\w*)\s*\([^()\n]*\)\s*(?::=|=(?!=)|if\b|\{|contains\b)", re.M)
_IMPORT = re.compile(r"^[ \t]*import\s+([\w.]+)(?:\s+as\s+(\w+))?", re.M)
_KEYWORDS = frozenset(
    {"set", "not", "some", "every", "in", "if", "else", "with", "as", "contains", "import", "package", "default"}
)
_NONDETERMINISTIC = ("time.now_ns", "rand.", "uuid.", "http.send", "opa.runtime", "crypto.x509.parse_and_verify")


def strip_comments(source: str) -> str:
    """Blanks out comments (keeping offsets) but leaves string literals."""
    return _scan(source, blank_strings=False)


def strip_comments_and_strings(source: str) -> str:
    return _scan(source, blank_strings=True)


def _scan(src: str, blank_strings: bool) -> str:  # noqa: C901
    out = list(src)
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch == "#":
            while i < n and src[i] != "\n":
                out[i] = " "
                i += 1
        elif ch == '"':
            i += 1
            while i < n and src[i] != '"' and src[i] != "\n":
                if blank_strings:
                    out[i] = " "
                if src[i] == "\\" and i + 1 < n:
                    if blank_strings:
                        out[i + 1] = " "
                    i += 1
                i += 1
            i += 1
        elif ch == "`":
            i += 1
            while i < n and src[i] != "`":
                if blank_strings and src[i] != "\n":
                    out[i] = " "
                i += 1
            i += 1
        else:
            i += 1
    return "".join(out)


_NAME = re.compile(r"[A-Za-z_]\w*")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|`([^`]*)`')


@dataclasses.dataclass(frozen=True)
class InputNeeds:
    """What of `input` the policies can read.

    tree: the paths they reference (`input.request.method`); WHOLE where they
    take a whole object (`f(input.request)`). names: every identifier and
    string in the policies and their data; an object key that appears nowhere
    cannot be read by name, so it is dropped even below a WHOLE reference.
    (A policy that iterates over an object's keys sees only the named ones.)
    """

    tree: object  # WHOLE, or {key: subtree}
    reads_clock: bool
    names: frozenset | None = None

    def trim(self, document: dict) -> dict:
        """The part of an input document the policies read."""
        return _trim(document, self.tree, self.names)

    @property
    def memoizable(self) -> bool:
        return not self.reads_clock


def _trim(value, tree, names):
    if not isinstance(value, dict):
        return value
    if tree is WHOLE:
        if names is None:
            return value
        return {k: _trim(v, WHOLE, names) for k, v in value.items() if k in names}
    return {k: _trim(value[k], sub, names) for k, sub in tree.items() if k in value}


def mentioned_names(modules: dict[str, str], data: dict | None = None) -> frozenset:
    """Identifiers and string literals of the policies, plus every key and string of their data."""
    found = set()
    for source in modules.values():
        text = strip_comments(source)
        for a, b in _STRING.findall(text):
            found.add(a or b)
        found.update(_NAME.findall(strip_comments_and_strings(source)))
    stack = [data or {}]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.update(k for k in node if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            found.add(node)
    return frozenset(found)


def _add(tree: dict, path: list[str]):
    node = tree
    for i, key in enumerate(path):
        if i == len(path) - 1:
            node[key] = WHOLE
            return
        child = node.get(key)
        if child is WHOLE:
            return
        if child is None:
            child = node[key] = {}
        node = child


def input_needs(modules: dict[str, str], data: dict | None = None) -> InputNeeds:
    if not modules:
        # A prebuilt policy.wasm without its sources: nothing is known, so the
        # whole input is given and no decision is memoized.
        return InputNeeds(WHOLE, True, None)
    names = mentioned_names(modules, data)
    tree: dict = {}
    whole = False
    clock = False
    for source in modules.values():
        text = strip_comments(source)
        for m in _REF.finditer(text):
            path = [a or b for a, b in _SEGMENT.findall(m.group(1))]
            if not path:
                whole = True
            else:
                _add(tree, path)
        code = strip_comments_and_strings(source)
        if any(tok in code for tok in _NONDETERMINISTIC):
            clock = True
    # input.now_ns can only be read by naming it.
    clock = clock or "now_ns" in names
    return InputNeeds(WHOLE if whole else tree, clock, names)


@dataclasses.dataclass(frozen=True)
class Call:
    name: str
    location: str  # file:line:col


def called_functions(modules: dict[str, str]) -> list[Call]:
    """Every function call that is not a user-defined rule or a data reference."""
    defined, aliases = set(), set()
    stripped = {name: strip_comments_and_strings(src) for name, src in modules.items()}
    for code in stripped.values():
        defined.update(_FUNCTION_HEAD.findall(code))
        for path, alias in _IMPORT.findall(code):
            aliases.add(alias or path.split(".")[-1])
    calls = []
    for name, code in stripped.items():
        for m in _CALL.finditer(code):
            fn = m.group(1)
            head = fn.split(".")[0]
            if head in _KEYWORDS or head == "data" or head in aliases or fn in defined:
                continue
            line, col = line_col(code, m.start(1))
            calls.append(Call(fn, f"{name}:{line}:{col}"))
    return calls
