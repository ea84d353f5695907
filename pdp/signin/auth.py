"""/api/v1/auth/*: login (mail a magic link), verify, refresh, logout, status."""

from __future__ import annotations

import time

import falcon

from ..accounts import errors as e
from ..accounts.refresh import family_of
from .http import BadInput, read_fields


def _no_store(resp):
    resp.set_header("Cache-Control", "no-store")


class Login:
    """POST {"email"} -> 202 whether or not the account exists."""

    def __init__(self, signin, client_info):
        self._signin = signin
        self._client = client_info

    def on_post(self, req, resp):
        doc = read_fields(req, {"email": str}, required=("email",))
        self._signin.request_link(doc["email"], self._client(req))
        resp.status = falcon.HTTP_202
        resp.media = {"status": "accepted", "detail": "if an account has this address, a sign-in link is on its way"}


class Verify:
    """POST {"token"} (the magic link's) or {"mfa_token", "code" | "recovery_code"}."""

    def __init__(self, signin, client_info):
        self._signin = signin
        self._client = client_info

    def on_post(self, req, resp):
        doc = read_fields(req, {"token": str, "mfa_token": str, "code": str, "recovery_code": str})
        resp.media = verify(self._signin, doc, self._client(req), BadInput)
        _no_store(resp)


def verify(signin, doc: dict, client, bad_input) -> dict:
    """The one verify step both the JSON API and the magic-link page use."""
    if "token" in doc:
        if set(doc) != {"token"}:
            raise bad_input("send either token, or mfa_token with code or recovery_code")
        return signin.redeem_link(doc["token"], client)
    if "mfa_token" in doc and len(set(doc) & {"code", "recovery_code"}) == 1 and len(doc) == 2:
        return signin.complete_mfa(
            doc["mfa_token"], client, code=doc.get("code"), recovery_code=doc.get("recovery_code")
        )
    raise bad_input("send either token, or mfa_token with code or recovery_code")


class Refresh:
    """POST {"refresh_token"} -> a new pair; the old refresh token is used up."""

    def __init__(self, issuer):
        self._issuer = issuer

    def on_post(self, req, resp):
        doc = read_fields(req, {"refresh_token": str}, required=("refresh_token",))
        resp.media = self._issuer.refresh(doc["refresh_token"])
        _no_store(resp)


class Logout:
    """POST with the access token (and optionally {"refresh_token"}): ends the
    session's refresh family and denylists the access token until it expires."""

    def __init__(self, issuer, caller_auth, denylist, clock=time.time):
        self._issuer = issuer
        self._auth = caller_auth
        self._denylist = denylist
        self._clock = clock

    def on_post(self, req, resp):
        caller = self._auth.required(req)
        doc = read_fields(req, {"refresh_token": str})
        claims = caller["claims"]
        families = set()
        if isinstance(claims.get("sid"), str):
            families.add(claims["sid"])
        if "refresh_token" in doc:
            family_of(doc["refresh_token"])  # 401 for a malformed one
            try:
                family = self._issuer.family(doc["refresh_token"])
            except e.AuthFailed:
                family = None  # already ended or expired: nothing to do
            # Only the caller's own sessions: a stray refresh token of someone else's is ignored.
            if family is not None and family.user_id == caller["sub"]:
                families.add(family.family_id)
        for family_id in families:
            self._issuer.end(family_id, "logout")
        if isinstance(claims.get("jti"), str):
            try:
                self._denylist.revoke(
                    str(claims.get("iss", "")), claims["jti"], int(claims["exp"] - self._clock()) + 60
                )
            except Exception as err:  # noqa: BLE001 - any Redis failure: the token stays valid, so say so
                raise e.StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        resp.media = {"status": "logged_out", "sessions_ended": len(families)}
        _no_store(resp)


class Status:
    """GET: who the caller is, how and when they signed in, and when the token expires."""

    def __init__(self, caller_auth, clock=time.time):
        self._auth = caller_auth
        self._clock = clock

    def on_get(self, req, resp):
        caller = self._auth.required(req)
        claims = caller["claims"]
        resp.media = {
            "authenticated": True,
            "user_id": caller["sub"],
            "roles": caller["roles"],
            "plan": caller["plan"],
            "mfa": caller["mfa"],
            "amr": claims.get("amr", []),
            "session_id": claims.get("sid"),
            "issued_at": claims.get("iat"),
            "auth_time": claims.get("auth_time"),
            "expires_at": claims["exp"],
            "expires_in": max(0, int(claims["exp"] - self._clock())),
        }
        _no_store(resp)
