"""Email addresses as account keys: one normalized form per mailbox we can tell apart."""

from __future__ import annotations

import re

from .errors import InvalidInput

# Deliberately plain: a local part of printable ASCII without spaces or "@",
# and a domain of dot-separated LDH labels. Quoted local parts and IP literals
# are valid in RFC 5321 but are a phishing aid, not a user need.
# Matched with fullmatch: `$` also matches before a final "\n", which let
# "ann\n@example.com" through as a second account beside ann@example.com.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
MAX_EMAIL_LENGTH = 254


def normalize_email(raw) -> str:
    """The account key for an address: trimmed, domain lower-cased (IDNA),
    local part lower-cased (every mainstream provider treats it so, and two
    accounts differing only by case would be a takeover risk).

    Raises InvalidInput for anything that is not an address."""
    if not isinstance(raw, str):
        raise InvalidInput("email must be a string")
    value = raw.strip()
    if not value or len(value) > MAX_EMAIL_LENGTH or value.count("@") != 1:
        raise InvalidInput("email is not a valid address")
    local, domain = value.split("@")
    if not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidInput("email is not a valid address")
    try:
        domain = domain.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidInput("email is not a valid address") from None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput("email is not a valid address")
    normalized = f"{local.lower()}@{domain}"
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidInput("email is not a valid address")
    return normalized
