"""Strict config files: a small declarative schema for YAML and JSON documents.

Every file the services read (the proxy's routes file, the policy's data.json)
is checked against a tree of nodes before anything starts. An unknown key, a
wrong type or a bad value raises SchemaError naming the key path
(`clusters.core.retry.attemps`) and what was expected, which the caller
prefixes with the file name: one startup line, as envoyproxy/ratelimit's
valid-keys check does.

Defaults are never written here: a Record builds a dataclass from the keys
that are present, so an absent key takes the dataclass field's default (and
`reference()` reads the defaults from the same place for the docs).

Rules shared by every node: a YAML `null` (`key:` with nothing after it) is
the same as leaving the key out; a string is never a list (so
`allow_origins: "https://app.example"` is an error, not a tuple of
characters); true/false are never numbers, and numbers are never strings.

Why our own and not a library: jsonschema would keep the defaults in a
second place (the schema) and word its errors in JSON-pointer terms the
ratelimit-style line does not want; pydantic would be a large dependency of
the proxy image for about 300 lines of checks.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Iterable

MISSING = object()
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class SchemaError(ValueError):
    """A value that does not fit its node; str() is `path: problem`."""

    def __init__(self, path: str, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


def join(path: str, key) -> str:
    """`a.b` for a plain key, `a["x.y"]` for one with dots or odd characters."""
    key = str(key)
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def describe(value) -> str:
    """What a value is, for 'got ...' (strings that may hold a password are not shown)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        if "@" in value:
            return "a string (not shown: it may hold a password)"
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Node:
    """One value's rule. check() returns the converted value or raises SchemaError."""

    expected = "a value"

    def check(self, value, path: str):
        raise NotImplementedError

    def accepts(self, value) -> bool:
        """Whether the value has this node's type (AnyOf picks the node by it)."""
        return True

    def fail(self, value, path: str, expected: str = None):
        raise SchemaError(path, f"expected {expected or self.expected}, got {describe(value)}")


class Str(Node):
    def __init__(
        self,
        choices: Iterable[str] = None,
        pattern: str = None,
        nonempty: bool = True,
        expected: str = None,
        convert: Callable[[str], Any] = None,
    ):
        self.choices = tuple(choices) if choices is not None else None
        self.pattern = re.compile(pattern) if pattern else None
        self.nonempty = nonempty
        self.convert = convert
        if expected:
            self.expected = expected
        elif self.choices:
            self.expected = "one of " + ", ".join(self.choices)
        else:
            self.expected = "a non-empty string" if nonempty else "a string"

    def accepts(self, value):
        return isinstance(value, str)

    def check(self, value, path):
        if not isinstance(value, str):
            self.fail(value, path)
        if self.nonempty and not value.strip():
            self.fail(value, path)
        if self.choices is not None and value not in self.choices:
            self.fail(value, path)
        if self.pattern is not None and not self.pattern.match(value):
            self.fail(value, path)
        return self.convert(value) if self.convert else value


class Number(Node):
    """An int (integer=True) or any number, within [minimum, maximum]."""

    def __init__(self, minimum=None, maximum=None, integer: bool = False):
        self.minimum, self.maximum, self.integer = minimum, maximum, integer
        kind = "an integer" if integer else "a number"
        if minimum is not None and maximum is not None:
            self.expected = f"{kind} from {minimum} to {maximum}"
        elif minimum is not None:
            self.expected = f"{kind}, at least {minimum}"
        elif maximum is not None:
            self.expected = f"{kind}, at most {maximum}"
        else:
            self.expected = kind

    def accepts(self, value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def check(self, value, path):
        if not self.accepts(value) or (self.integer and not isinstance(value, int)):
            self.fail(value, path)
        if (
            value != value
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            self.fail(value, path)
        return value if self.integer else float(value)


def Int(minimum=None, maximum=None) -> Number:  # noqa: N802 - reads as a type in a schema
    return Number(minimum, maximum, integer=True)


class Bool(Node):
    expected = "true or false"

    def accepts(self, value):
        return isinstance(value, bool)

    def check(self, value, path):
        if not isinstance(value, bool):
            self.fail(value, path)
        return value


class ListOf(Node):
    def __init__(self, element: Node, min_items: int = 0, convert: Callable = tuple, expected: str = None):
        self.element, self.min_items, self.convert = element, min_items, convert
        self.expected = expected or ("a non-empty list" if min_items else "a list") + f" (each {element.expected})"

    def accepts(self, value):
        return isinstance(value, list)

    def check(self, value, path):
        if not isinstance(value, list) or len(value) < self.min_items:
            self.fail(value, path)
        return self.convert(self.element.check(v, item(path, i)) for i, v in enumerate(value))


class MapOf(Node):
    """A mapping whose keys are free (each checked by `key`) and whose values share one node."""

    def __init__(self, value: Node, key: Node = None, min_items: int = 0, expected: str = None):
        self.value, self.key, self.min_items = value, key or Str(), min_items
        self.expected = (
            expected
            or ("a non-empty mapping" if min_items else "a mapping")
            + f" (each key {self.key.expected}, each value {self.value.expected})"
        )

    def accepts(self, value):
        return isinstance(value, dict)

    def check(self, value, path):
        if not isinstance(value, dict) or len(value) < self.min_items:
            self.fail(value, path)
        out = {}
        for k, v in value.items():
            where = join(path, k)
            if not self.key.accepts(k):
                raise SchemaError(where, f"expected the key to be {self.key.expected}")
            try:
                k = self.key.check(k, where)
            except SchemaError as exc:
                raise SchemaError(where, f"bad key: {exc.problem}") from None
            if v is None:
                raise SchemaError(where, f"expected {self.value.expected}, got {describe(v)}")
            out[k] = self.value.check(v, where)
        return out


class AnyOf(Node):
    """The first node whose type fits the value (e.g. a URL or a list of URLs)."""

    def __init__(self, *nodes: Node, expected: str = None):
        self.nodes = nodes
        self.expected = expected or " or ".join(n.expected for n in nodes)

    def accepts(self, value):
        return any(n.accepts(value) for n in self.nodes)

    def check(self, value, path):
        for node in self.nodes:
            if node.accepts(value):
                try:
                    return node.check(value, path)
                except SchemaError as exc:
                    if exc.path != path:
                        raise  # deeper: that place says best what it wanted
                    self.fail(value, path)
        self.fail(value, path)


class Custom(Node):
    """A check of our own: `func(value, path)` returns the value, raising SchemaError or
    ValueError (whose message becomes the problem at `path`)."""

    def __init__(self, func: Callable[[Any, str], Any], expected: str, accepts: Callable[[Any], bool] = None):
        self.func, self.expected, self._accepts = func, expected, accepts

    def accepts(self, value):
        return self._accepts(value) if self._accepts else True

    def check(self, value, path):
        try:
            return self.func(value, path)
        except SchemaError:
            raise
        except ValueError as exc:
            raise SchemaError(path, str(exc)) from None


@dataclasses.dataclass(frozen=True)
class Field:
    """One key of a Record.

    attr: the built object's attribute (default: the key). scale: the file's
    unit per attribute unit (`timeout_ms` into `timeout_s` is 1000).
    flatten: a nested Record whose attributes go into this one (`retry:
    {attempts}` into `retry_attempts`)."""

    key: str
    node: Node
    help: str = ""
    attr: str = None
    required: bool = False
    scale: float = None
    flatten: bool = False
    shown_default: Any = MISSING  # for the docs, when the attribute's default has another form

    @property
    def target(self) -> str:
        return self.attr or self.key


class Record(Node):
    """A mapping with a fixed set of keys. build: a dataclass (or any callable
    taking the attributes as keywords); None returns the attributes as a dict.
    defaults_from: where reference() finds the defaults when build is not the
    dataclass that holds them (a flattened block)."""

    def __init__(self, fields: Iterable[Field], build: Callable = None, defaults_from=None, expected: str = None):
        self.fields = tuple(fields)
        self.by_key = {f.key: f for f in self.fields}
        self.build = build
        self.defaults_from = defaults_from or (build if dataclasses.is_dataclass(build) else None)
        self.expected = expected or "a mapping with the keys " + ", ".join(self.by_key)

    def accepts(self, value):
        return isinstance(value, dict)

    def check(self, value, path):
        if not isinstance(value, dict):
            self.fail(value, path)
        for key in value:
            if key not in self.by_key:
                raise SchemaError(join(path, key), f"unknown key (expected one of {', '.join(self.by_key)})")
        attrs = {}
        for field in self.fields:
            raw = value.get(field.key)
            where = join(path, field.key)
            if raw is None:
                if field.required:
                    raise SchemaError(where, f"required (expected {field.node.expected})")
                continue
            checked = field.node.check(raw, where)
            if field.flatten:
                attrs.update(checked)
            else:
                attrs[field.target] = checked / field.scale if field.scale else checked
        return self.build(**attrs) if self.build else attrs

    def default_of(self, field: Field):
        if field.shown_default is not MISSING:
            return field.shown_default
        if self.defaults_from is None:
            return MISSING
        for f in dataclasses.fields(self.defaults_from):
            if f.name == field.target:
                if f.default is not dataclasses.MISSING:
                    value = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    return MISSING  # a nested block: its own rows show its defaults
                else:
                    return MISSING
                if value is not None and field.scale:
                    value = value * field.scale
                    value = int(value) if float(value).is_integer() else value
                return value
        return MISSING

    def reference(self, path: str = "") -> list:
        """(key path, expected, default, help) rows, nested blocks included, for the docs."""
        rows = []
        for field in self.fields:
            where = join(path, field.key)
            node = field.node
            inner = _record_in(node)
            if inner is not None:
                rows.append((where, "a mapping" if isinstance(node, Record) else node.expected, MISSING, field.help))
                rows.extend(inner[0].reference(inner[1](where)))
                continue
            rows.append(
                (
                    where,
                    node.expected,
                    MISSING if field.required else self.default_of(field),
                    ("**required.** " if field.required else "") + field.help,
                )
            )
        return rows


def _record_in(node):
    """(record, path maker) for a node that holds a Record: itself, a list or a map of them."""
    if isinstance(node, Record):
        return node, lambda p: p
    if isinstance(node, ListOf) and isinstance(node.element, Record):
        return node.element, lambda p: p + "[]"
    if isinstance(node, MapOf) and isinstance(node.value, Record):
        return node.value, lambda p: p + ".NAME"
    return None


def markdown_reference(record: Record, path: str = "") -> str:
    """A Markdown table of every key of a document (generated docs)."""
    lines = ["| key | expected | default | description |", "| --- | --- | --- | --- |"]
    for where, expected, default, help_ in record.reference(path):
        shown = "" if default is MISSING else f"`{_yaml_value(default)}`"
        lines.append(f"| `{where}` | {expected.replace('|', '&#124;')} | {shown} | {help_} |")
    return "\n".join(lines)


def _yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(str(v) for v in items) + "]"
    return str(value)
