"""Settings as data, in gunicorn's shape: both services declare theirs as rows
of `Setting` (pdp/config.py, proxy/config.py) and load them with `load`.

The rules are the same for every row:
- the default is written as the environment would write it, and parsed by the
  row's own parser (so a default is checked like any value, and the docs show it
  as a user would type it);
- an unset or empty variable means the default (Helm renders unset values empty);
- a bad value stops startup with one line, `ENV: what was expected, got 'value'`;
- a secret row (or a value holding credentials, `user:pass@host`) is never echoed.

Each parser carries a JSON-schema fragment of the value it accepts (`schema_of`),
and a row may name the Helm values path that feeds it (`helm=`): from these
tables scripts/gen_settings.py writes the settings docs, the chart's env blocks
and the settings parts of its values.schema.json.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, Callable, Iterable, Mapping


class ConfigError(ValueError):
    """One bad setting; str(err) is the single line printed at startup."""


@dataclasses.dataclass(frozen=True)
class Helm:
    """How the Helm chart sets one variable.

    values: the values path whose value becomes the variable (a plain mapping,
            written into templates/_settings.tpl); an empty string is left unset.
    when:   values paths of which at least one must be true for it to be set.
    template: instead, the chart's templates set it by hand, and this says how
            (a secretKeyRef, a value derived from other values); such a row is
            neither generated nor settable through the pass-through map.
    A row with no Helm is set through the service's pass-through map
    (`pdp.settings` / `proxy.settings`: ENV: value).
    """

    values: str = ""
    when: tuple[str, ...] = ()
    template: str = ""

    def __post_init__(self):
        if bool(self.values) == bool(self.template):
            raise ValueError("Helm: give exactly one of values= and template=")
        if isinstance(self.when, str):
            object.__setattr__(self, "when", (self.when,))


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # attribute on the loaded settings
    env: str  # environment variable (the seed's name where it has one)
    parse: Callable[[str], Any]
    default: str  # as the environment would write it; "" = unset
    description: str
    secret: bool = False
    helm: "Helm | str | None" = None  # a values path (str) is Helm(values=path)

    @property
    def chart(self) -> "Helm | None":
        return Helm(values=self.helm) if isinstance(self.helm, str) else self.helm

    @property
    def schema(self) -> dict:
        """The JSON schema of the value (from the parser), with the description."""
        fragment = _allow_empty(dict(schema_of(self.parse)))
        return {**fragment, "description": f"{self.env}: {self.description}"}

    @property
    def default_value(self) -> Any:
        return self.value_of(None)

    def value_of(self, raw: str | None) -> Any:
        """Parses raw (None or "" = the default); raises ConfigError naming the variable."""
        if raw is None or raw.strip() == "":
            raw = self.default
        try:
            return self.parse(raw)
        except ValueError as err:
            shown = "<redacted>" if self.secret or "@" in raw else repr(raw[:80])
            raise ConfigError(f"{self.env}: {err}, got {shown}") from None


def load(
    table: Iterable[Setting], environ: Mapping[str, str], overrides: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """Every row's value from environ (overrides, by row name, win); the first bad one raises."""
    values = {}
    for row in table:
        raw = environ.get(row.env)
        if overrides and overrides.get(row.name) is not None:
            raw = overrides[row.name]
        values[row.name] = row.value_of(raw)
    return values


def markdown_table(table: Iterable[Setting]) -> str:
    """A settings table in markdown (scripts/gen_settings.py writes docs/settings.md)."""
    lines = ["| variable | default | description |", "| --- | --- | --- |"]
    for s in table:
        default = f"`{s.default}`" if s.default else ""
        lines.append(f"| `{s.env}` | {default} | {s.description} |")
    return "\n".join(lines)


def describe(table: Iterable[Setting]) -> str:
    """One line per setting, for a terminal (`pdp settings`, `lucid-proxy --settings`)."""
    return "\n".join(f"{s.env:<34} {s.default or '-':<28} {s.description}" for s in table)


def schema_of(parse: Callable[[str], Any]) -> dict:
    """The JSON-schema fragment a parser carries (`with_schema`); a plain string otherwise."""
    return getattr(parse, "json_schema", {"type": "string"})


def with_schema(fragment: dict) -> Callable:
    """Decorator: the JSON-schema fragment of the values this parser accepts, as a
    values file would write them (an integer as a number, a flag as a boolean)."""

    def mark(parse):
        parse.json_schema = fragment
        return parse

    return mark


def _allow_empty(fragment: dict) -> dict:
    """An empty string means the default (the chart then leaves the variable unset)."""
    if fragment.get("type") == "string" and "pattern" in fragment:
        return {**fragment, "pattern": fragment["pattern"] + "|^$"}
    if "enum" in fragment and all(isinstance(o, str) for o in fragment["enum"]):
        return {**fragment, "enum": ["", *fragment["enum"]]}
    return fragment


# --- parsers: each takes the raw string and returns the value or raises ValueError ---


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return value

    return with_schema({"type": "integer", "minimum": lo, "maximum": hi})(parse)


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number from {lo} to {hi}") from None
        if not lo <= value <= hi:  # also refuses nan
            raise ValueError(f"expected a number from {lo} to {hi}")
        return value

    return with_schema({"type": "number", "minimum": lo, "maximum": hi})(parse)


@with_schema({"type": "boolean"})
def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return value

    return with_schema({"type": "string", "enum": list(options)})(parse)


def text(raw: str) -> str:
    return raw.strip()


def optional_text(raw: str) -> str | None:
    return raw.strip() or None


def url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if not any(value.startswith(s + "://") and len(value) > len(s) + 3 for s in schemes):
            raise ValueError("expected a URL starting with " + " or ".join(s + "://" for s in schemes))
        return value

    return with_schema({"type": "string", "pattern": "^(" + "|".join(schemes) + ")://."})(parse)


@with_schema({"type": "string"})
def cidr_list(raw: str) -> tuple:
    """Comma-separated networks (the proxy's and the PDP's TRUSTED_PROXIES)."""
    from .client_ip import parse_cidr_list

    return parse_cidr_list(raw)


@with_schema({"type": "string"})
def networks(raw: str) -> tuple[str, ...]:
    nets = tuple(n.strip() for n in raw.split(",") if n.strip())
    try:
        for net in nets:
            ipaddress.ip_network(net, strict=False)
    except ValueError:
        raise ValueError("expected comma-separated IP networks (CIDR)") from None
    return nets
