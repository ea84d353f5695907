"""Which JWTs are access tokens: JWT_ACCESS_TOKEN_TYPES.

A signature only says who signed a token, not what it is for: an IdP signs
its refresh and ID tokens with the same key. Each accepted type is the
header's `typ` (RFC 9068: `at+jwt`), optionally with the payload's `typ`
claim, written `HEADER:CLAIM`:

- `at+jwt` (the default): tokens minted by `pdp token` and sign-in, and IdPs
  that follow RFC 9068 (Auth0's and Okta's RFC 9068 profiles, Curity, ...);
- `JWT:Bearer`: Keycloak, whose access tokens say `typ: JWT` in the header
  and `"typ": "Bearer"` in the payload (its refresh tokens say `Refresh`,
  its ID tokens `ID`);
- `none`: a token with no typ header at all. Only for an IdP that marks
  nothing; then set JWT_AUDIENCE too, so that at least a token for another
  service is refused.

Header values compare as media types (case-insensitive, `application/`
optional, RFC 7515 4.1.9); claim values compare case-insensitively.
"""

from __future__ import annotations

DEFAULT_TOKEN_TYPES = ("at+jwt",)
_NO_TYP = "none"


def _media_type(value: str) -> str:
    value = value.strip().lower()
    return value.removeprefix("application/")


def normalize_token_types(raw: str) -> tuple[str, ...]:
    """`at+jwt, JWT:Bearer` -> ("at+jwt", "jwt:bearer"), the setting's value; ValueError when empty or malformed."""
    pairs = parse_token_types(raw.split(","))
    return tuple((h or _NO_TYP) + ("" if c is None else f":{c}") for h, c in pairs)


def parse_token_types(entries) -> tuple:
    """["at+jwt", "JWT:Bearer"] -> (("at+jwt", None), ("jwt", "bearer")); ValueError when empty or malformed."""
    types = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        header, sep, claim = entry.partition(":")
        header, claim = _media_type(header), claim.strip().lower()
        if not header or (sep and not claim) or not (header + claim).isprintable() or " " in header + claim:
            raise ValueError("expected a comma-separated list of typ values such as at+jwt or JWT:Bearer")
        # None stands for "no typ header", so a header literally saying typ "none" is not one.
        types.append((None if header == _NO_TYP else header, claim if sep else None))
    if not types:
        raise ValueError("expected at least one token type, such as at+jwt")
    return tuple(types)


def is_access_token(header: dict, claims: dict, accepted) -> bool:
    """True when the (verified) header and claims match one accepted type."""
    typ = header.get("typ")
    if typ is None:
        header_typ = None
    elif isinstance(typ, str):
        header_typ = _media_type(typ)
    else:
        return False
    claim_typ = claims.get("typ")
    claim_typ = claim_typ.strip().lower() if isinstance(claim_typ, str) else None
    for want_header, want_claim in accepted:
        if want_header == header_typ and (want_claim is None or want_claim == claim_typ):
            return True
    return False


def describe_types(accepted) -> str:
    return " or ".join((h or _NO_TYP) + ("" if c is None else f":{c}") for h, c in accepted)
