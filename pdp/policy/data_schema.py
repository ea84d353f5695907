"""The shipped gateway policy's data (data.gateway, policies/gateway/data.json), checked strictly.

The Rego reads these tables; a typo in them is no Rego error but a silent
change of who may call what (an `acces` table denies everything, a plan's
`daly` limit is no limit). So a data.json that holds the gateway policy's
tables is checked against this schema when the policy loads: an unknown key,
a wrong type or a bad value is one PolicyError naming the file, the key path
and what was expected (`gateway/data.json: plans.pro.daly: unknown key ...`).

Which files: those whose document becomes data.gateway (gateway/data.json,
or a root data.json's "gateway" key) and use at least one of its keys. A
policy of your own in package gateway with other data (`{"grants": ...}`)
is not the shipped layout and is not checked here.
"""

from __future__ import annotations

from servicekit.schema import AnyOf, Bool, Field, Int, ListOf, MapOf, Record, SchemaError, Str, join

from .errors import PolicyError

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
WHO = ("anyone", "authenticated", "mfa", "admin_or_self", "signup")
_NAME = r"^[A-Za-z0-9._:-]{1,64}$"  # roles and plans (the token contract's charset)
_ROUTE = Str(pattern=r"^[a-z0-9][a-z0-9_.-]*$", expected="a route name (lower-case, digits, . _ -)")
_SEGMENT = r"(?:[A-Za-z0-9._~-]+|\{[a-z_]+\})"

GATEWAY_DATA = Record(
    [
        Field(
            "api_prefix",
            ListOf(Str(pattern=r"^[^/]+$", expected="a path segment"), min_items=1),
            "Path segments every API path starts with (`[api, v1]`).",
        ),
        Field(
            "endpoints",
            MapOf(
                MapOf(_ROUTE, key=Str(choices=METHODS), min_items=1, expected="a mapping of HTTP method to route name"),
                key=Str(
                    pattern=rf"^{_SEGMENT}(?:/{_SEGMENT})*$",
                    expected="a path template below api_prefix (segments, `{id}` for a parameter)",
                ),
                min_items=1,
            ),
            "Path template -> method -> route name.",
        ),
        Field(
            "access",
            MapOf(
                AnyOf(
                    Str(choices=WHO),
                    ListOf(Str(pattern=_NAME, expected="a role name"), min_items=1),
                    expected="one of " + ", ".join(WHO) + ", or a non-empty list of roles",
                ),
                key=_ROUTE,
            ),
            "Route name -> who may call it.",
        ),
        Field(
            "plans",
            MapOf(
                Record(
                    [
                        Field("daily", Int(minimum=0), "Requests per calendar day (none: no daily limit)."),
                        Field("monthly", Int(minimum=0), "Requests per calendar month (none: no monthly limit)."),
                    ],
                    expected="a plan (a mapping with daily and/or monthly)",
                ),
                key=Str(pattern=_NAME, expected="a plan name"),
            ),
            "Plan name -> its quotas.",
        ),
        Field("default_plan", Str(pattern=_NAME, expected="a plan name"), "The plan of a token without a known one."),
        Field(
            "brute_force_limit",
            Record(
                [
                    Field("limit", Int(minimum=1), "Sign-in attempts per window.", required=True),
                    Field("window_s", Int(minimum=1), "The window, in seconds.", required=True),
                    Field("burst", Int(minimum=1), "Bucket capacity.", required=True),
                ]
            ),
            "Per-IP token bucket on the sign-in routes.",
        ),
        Field(
            "settings",
            Record(
                [
                    Field(
                        "rate_limit_per_minute",
                        Int(minimum=1),
                        "Per-caller requests per minute (RATE_LIMIT_REQUESTS_PER_MINUTE wins).",
                    ),
                    Field("rate_limit_burst", Int(minimum=1), "Its bucket capacity (RATE_LIMIT_BURST_SIZE wins)."),
                    Field("rate_limit_enabled", Bool(), "Spend quotas at all (RATE_LIMIT_ENABLED wins)."),
                    Field("signup_mode", Str(choices=("open", "admin")), "Who may create accounts (SIGNUP_MODE wins)."),
                ]
            ),
            "Defaults of the knobs the PDP overlays from its settings.",
        ),
    ],
    expected="the gateway policy's data (a mapping with endpoints, access, plans, ...)",
)


def uses_gateway_layout(doc) -> bool:
    return isinstance(doc, dict) and any(key in GATEWAY_DATA.by_key for key in doc)


def check_gateway_data(doc: dict, rel: str, path: str = "") -> None:
    """Raises PolicyError `rel: key.path: what was expected` for a doc that does not fit."""
    try:
        GATEWAY_DATA.check(doc, path)
        plans = doc.get("plans")
        default = doc.get("default_plan")
        if default is not None and plans is not None and default not in plans:
            raise SchemaError(
                join(path, "default_plan"), f"expected one of the plans ({', '.join(plans)}), got {default!r}"
            )
    except SchemaError as exc:
        raise PolicyError(str(exc), rel) from None


def check_data_file(parts: tuple, doc, rel: str) -> None:
    """Checks one data.json (its folder's parts under the bundle root) if it holds data.gateway."""
    if parts == ("gateway",):
        target, path = doc, ""
    elif parts == () and isinstance(doc, dict):
        target, path = doc.get("gateway"), "gateway"
    else:
        return
    if uses_gateway_layout(target):
        check_gateway_data(target, rel, path)
