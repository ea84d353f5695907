"""What a claim may contain before it reaches a policy and, from there, a header.

The policy copies sub, roles and plan into x-user-id, x-user-roles and
x-user-plan. A quote, a comma or a control character in one of them could
split a header, add a role (`user,admin` joined with `,`) or, on an engine
that mishandles strings, reshape the decision. Refusing such tokens at the
door is defence in depth beside the engines' own escaping:

- a role and the plan: `^[A-Za-z0-9._:-]{1,64}$`;
- sub: 1 to 256 characters of printable ASCII (U+0021 to U+007E) other than
  `"` `'` `\\` `,` `;` `<` `>` and the backtick: no spaces, no control or
  non-ASCII characters. `auth0|5f7c...`, `user@example.com`, UUIDs and URLs pass.

auth_time (OIDC Core 2: when the session's user signed in) is optional, so
tokens minted before it existed still work; step-up checks (pdp/accounts/step_up.py)
treat a token without it as too old. When present it must be whole seconds,
not after iat and not in the future: a forged or sloppy value could otherwise
make a session look freshly signed in.
"""

from __future__ import annotations

import re

from .errors import InvalidCredential

ROLE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
PLAN_PATTERN = ROLE_PATTERN
SUB_PATTERN = re.compile(r"[!#$%&()*+\-./0-9:=?@A-Z\[\]^_a-z{|}~]{1,256}")
MAX_ROLES = 64


def check_subject_claims(sub, roles, plan, mfa) -> None:
    """Raises InvalidCredential naming the first claim that breaks the rules."""
    if not isinstance(sub, str) or not SUB_PATTERN.fullmatch(sub):
        raise InvalidCredential(
            "sub must be 1-256 printable ASCII characters without quotes, "
            "backslash, comma, semicolon, angle brackets or spaces"
        )
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidCredential("roles must be a list of strings")
    if len(roles) > MAX_ROLES:
        raise InvalidCredential(f"at most {MAX_ROLES} roles")
    if not all(ROLE_PATTERN.fullmatch(r) for r in roles):
        raise InvalidCredential("a role must match ^[A-Za-z0-9._:-]{1,64}$")
    if not isinstance(plan, str) or not PLAN_PATTERN.fullmatch(plan):
        raise InvalidCredential("plan must match ^[A-Za-z0-9._:-]{1,64}$")
    if not isinstance(mfa, bool):
        raise InvalidCredential("mfa must be true or false")


def check_auth_time(claims: dict, now: float, leeway: float = 0) -> None:
    """Raises InvalidCredential for an auth_time that is not whole seconds, is after iat, or is in the future."""
    if "auth_time" not in claims:
        return
    auth_time = claims["auth_time"]
    if not isinstance(auth_time, int) or isinstance(auth_time, bool) or auth_time < 0:
        raise InvalidCredential("auth_time must be a whole number of seconds")
    iat = claims.get("iat")
    if isinstance(iat, (int, float)) and not isinstance(iat, bool) and auth_time > iat:
        raise InvalidCredential("auth_time must not be after iat")
    if auth_time > now + leeway:
        raise InvalidCredential("auth_time must not be in the future")
