"""Who may use /ui/: a bearer JWT with role admin, or the session cookie set at sign-in.

The session cookie holds the signed-in access token (HttpOnly, SameSite=Strict,
Path=/ui, Secure behind HTTPS) and lives no longer than the token. A request
authenticated by the cookie that changes anything must also carry the CSRF
token (double-submit: cookie `lucid_ui_csrf`, header X-CSRF-Token); a bearer
token is never sent by a browser on its own, so it needs none.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time

from ..authn.errors import AuthUnavailable, InvalidCredential
from ..problem import Problem

log = logging.getLogger("lucid.pdp.ui")
SESSION_COOKIE = "lucid_ui_session"
CSRF_COOKIE = "lucid_ui_csrf"
CSRF_HEADER = "X-CSRF-Token"
ADMIN_ROLE = "admin"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def verify_admin(authenticator, token: str) -> dict:
    """The subject of an admin token; 401/403/503 problems otherwise."""
    try:
        subject = authenticator.authenticate("Bearer " + token)
    except InvalidCredential as err:
        raise Problem(
            401, "Unauthorized", str(err), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    except AuthUnavailable:
        raise Problem(503, "Service Unavailable", "cannot verify the token now") from None
    if not subject.get("authenticated"):
        raise Problem(401, "Unauthorized", "a bearer token is required")
    if ADMIN_ROLE not in subject.get("roles", []):
        raise Problem(403, "Forbidden", "the admin page needs role admin")
    return subject


class UiGuard:
    def __init__(self, authenticator):
        self._authn = authenticator

    def __call__(self, req) -> dict:
        header = req.get_header("Authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Problem(401, "Unauthorized", "unsupported authorization scheme")
            return verify_admin(self._authn, token.strip())
        token = req.cookies.get(SESSION_COOKIE)
        if not token:
            raise Problem(
                401,
                "Unauthorized",
                "sign in at /ui/ or send a bearer token",
                headers={"WWW-Authenticate": 'Bearer realm="lucid-ui"'},
            )
        subject = verify_admin(self._authn, token)
        if req.method not in _SAFE:
            sent, expected = req.get_header(CSRF_HEADER) or "", req.cookies.get(CSRF_COOKIE) or ""
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                raise Problem(403, "Forbidden", "missing or wrong CSRF token", type_="csrf")
        return subject


def start_session(req, resp, token: str, subject: dict) -> str:
    """Sets the session and CSRF cookies; returns the CSRF token for the page."""
    secure = req.scheme == "https" or (req.get_header("X-Forwarded-Proto") or "").lower() == "https"
    claims = subject.get("claims") or {}
    exp = claims.get("exp")
    max_age = max(1, int(exp - time.time())) if isinstance(exp, (int, float)) else 900
    csrf = secrets.token_urlsafe(32)
    resp.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, path="/ui", secure=secure, http_only=True, same_site="Strict"
    )
    resp.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/ui", secure=secure, http_only=False, same_site="Strict")
    log.info("admin page sign-in by %s", subject.get("sub"))
    return csrf


def end_session(resp) -> None:
    resp.unset_cookie(SESSION_COOKIE, path="/ui")
    resp.unset_cookie(CSRF_COOKIE, path="/ui")
