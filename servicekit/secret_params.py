"""Query parameters whose values are secrets: one list for every log and for the policy input.

The proxy masks them in its access log (proxy/accesslog.py); the PDP removes
them from input.request.query, so neither a policy nor the decision log ever
holds one. Names compare case-insensitively; a name is secret when it is in
SECRET_QUERY_PARAMS or contains one of SECRET_NAME_PARTS (`my_token`,
`clientSecret`, `X-Amz-Security-Token`).
"""

from __future__ import annotations

SECRET_QUERY_PARAMS = frozenset(
    {
        # OAuth 2 / OIDC and our own sign-in
        "access_token",
        "id_token",
        "refresh_token",
        "token",
        "jwt",
        "code",
        "client_secret",
        "assertion",
        "client_assertion",
        "otp",
        "totp",
        "magic",
        # keys and passwords
        "api_key",
        "apikey",
        "api-key",
        "key",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "auth",
        "authorization",
        "credential",
        "credentials",
        # sessions
        "session",
        "sessionid",
        "session_id",
        "sid",
        "phpsessid",
        "jsessionid",
        # signed URLs: AWS SigV4, Google Cloud Storage V4, Azure SAS, generic
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "sig",
        "signature",
    }
)
SECRET_NAME_PARTS = ("token", "secret", "password", "passwd", "signature", "credential", "apikey", "api_key")
REDACTED = "REDACTED"


def is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_QUERY_PARAMS or any(part in lowered for part in SECRET_NAME_PARTS)


def redact_query(query: str) -> str:
    """The raw query with secret parameters' values replaced by REDACTED (names and order kept)."""
    if not query:
        return ""
    parts = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        parts.append(f"{name}={REDACTED}" if sep and is_secret_param(_unquote(name)) else pair)
    return "&".join(parts)


def _unquote(name: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(name)
