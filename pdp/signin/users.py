"""/api/v1/users/*: sign-up, the caller's own profile, TOTP enrolment, admin edits."""

from __future__ import annotations

import falcon

from ..accounts import errors as e
from ..accounts.service import user_view
from ..accounts.store import PROFILE_FIELDS
from .http import BadInput, read_fields

_PROFILE_TYPES = {name: str for name in PROFILE_FIELDS}


class Users:
    """POST: sign-up (SIGNUP_MODE open: anyone; admin: role admin)."""

    def __init__(self, accounts, caller_auth, client_info):
        self._accounts = accounts
        self._auth = caller_auth
        self._client = client_info

    def on_post(self, req, resp):
        caller = self._auth.optional(req)
        doc = read_fields(req, {"email": str, "roles": list, "plan": str, **_PROFILE_TYPES}, required=("email",))
        user = self._accounts.sign_up(doc, caller, self._client(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/api/v1/users/{user['_id']}"
        resp.media = {
            **user_view(user),
            "next": 'POST /api/v1/auth/login {"email": ...} mails a link; its first use confirms the account',
        }


class Me:
    """GET the caller's account; PUT changes profile fields only (display_name, locale, timezone)."""

    def __init__(self, accounts, caller_auth):
        self._accounts = accounts
        self._auth = caller_auth

    def on_get(self, req, resp):
        caller = self._auth.required(req)
        resp.media = user_view(self._accounts.get(caller["sub"]))

    def on_put(self, req, resp):
        caller = self._auth.required(req)
        doc = read_fields(req, _PROFILE_TYPES)
        resp.media = user_view(self._accounts.update_profile(caller["sub"], doc))


class UserItem:
    """GET /users/{user_id}: the user themself or an admin."""

    def __init__(self, accounts, caller_auth):
        self._accounts = accounts
        self._auth = caller_auth

    def on_get(self, req, resp, user_id):
        caller = self._auth.required(req)
        if caller["sub"] != user_id and "admin" not in caller["roles"]:
            raise e.Forbidden("only the user or an admin may read this account")
        resp.media = user_view(self._accounts.get(user_id))


class AdminUserField:
    """PUT /users/{user_id}/roles {"roles": [...]} or /plan {"plan": "pro"} (admin, audited).

    One resource per field; `set_field` is the AccountService method that
    checks, audits and writes it (set_roles, set_plan).
    """

    def __init__(self, field: str, kind: type, set_field, caller_auth, client_info):
        self._field = field
        self._kind = kind
        self._set = set_field
        self._auth = caller_auth
        self._client = client_info

    def on_put(self, req, resp, user_id):
        admin = self._auth.admin(req)
        doc = read_fields(req, {self._field: self._kind}, required=(self._field,))
        resp.media = user_view(self._set(admin, user_id, doc[self._field], self._client(req)))


class Totp:
    """POST /users/me/totp: start enrolment (otpauth URI, secret, SVG QR code).
    DELETE /users/me/totp {"code" | "recovery_code"}: turn TOTP off (mfa session, audited).
    Both need a recent sign-in (pdp/accounts/step_up.py), as does the confirm."""

    def __init__(self, signin, caller_auth, issuer_name: str, accounts=None, client_info=None):
        self._signin = signin
        self._auth = caller_auth
        self._issuer_name = issuer_name
        self._accounts = accounts
        self._client = client_info

    def on_delete(self, req, resp):
        caller = self._auth.required(req)
        doc = read_fields(req, {"code": str, "recovery_code": str})
        if len(doc) != 1:
            raise BadInput("send either code or recovery_code")
        resp.media = self._signin.remove_totp(
            caller, doc.get("code"), doc.get("recovery_code"), audit=self._accounts.audit, client=self._client(req)
        )

    def on_post(self, req, resp):
        caller = self._auth.required(req)
        read_fields(req, {})
        resp.status = falcon.HTTP_201
        resp.media = self._signin.enrol_totp(caller, self._issuer_name)
        resp.set_header("Cache-Control", "no-store")


class TotpConfirm:
    """POST /users/me/totp/confirm {"code"}: the first valid code activates TOTP."""

    def __init__(self, signin, caller_auth):
        self._signin = signin
        self._auth = caller_auth

    def on_post(self, req, resp):
        caller = self._auth.required(req)
        doc = read_fields(req, {"code": str}, required=("code",))
        resp.media = self._signin.confirm_totp(caller, doc["code"])
        resp.set_header("Cache-Control", "no-store")
