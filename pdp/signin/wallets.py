"""Wallet sign-in and linking over HTTP (docs/auth.md, "Wallet sign-in").

- POST   /api/v1/auth/wallet/challenge   {"chain", "address", "purpose"?}  -> the text to sign
- POST   /api/v1/auth/wallet/verify      {"nonce", "signature"}            -> tokens or an MFA challenge
- GET    /api/v1/users/me/wallets                                          -> the caller's wallets
- POST   /api/v1/users/me/wallets        {"nonce", "signature", "second_factor"?}  (bearer)
- DELETE /api/v1/users/me/wallets/{address}                               (bearer)
"""

from __future__ import annotations

import falcon

from ..accounts import errors as e
from ..problem import PROBLEM_JSON, problem_body
from ..wallets.errors import ChallengeStoreUnavailable, WalletRefused

_CHALLENGE_FIELDS = {"chain": str, "address": str, "purpose": str}
_ANSWER_FIELDS = {"nonce": str, "signature": str}


def _no_store(resp):
    resp.set_header("Cache-Control", "no-store")


class WalletChallenge:
    def __init__(self, wallets, caller_auth, client_info):
        self._wallets = wallets
        self._auth = caller_auth
        self._client = client_info

    def on_post(self, req, resp):
        from .http import read_fields

        doc = read_fields(req, _CHALLENGE_FIELDS, required=("chain", "address"))
        purpose = doc.get("purpose", "sign_in")
        caller = self._auth.optional(req) if purpose == "link" else None
        resp.media = self._wallets.challenge(
            doc["chain"], doc["address"], self._client(req), purpose=purpose, caller=caller
        )
        _no_store(resp)


class WalletVerify:
    def __init__(self, wallets, client_info):
        self._wallets = wallets
        self._client = client_info

    def on_post(self, req, resp):
        from .http import read_fields

        doc = read_fields(req, _ANSWER_FIELDS, required=("nonce", "signature"), max_len=4096)
        resp.media = self._wallets.sign_in(doc["nonce"], doc["signature"], self._client(req))
        _no_store(resp)


class MyWallets:
    def __init__(self, wallets, caller_auth, client_info):
        self._wallets = wallets
        self._auth = caller_auth
        self._client = client_info

    def on_get(self, req, resp):
        resp.media = {"wallets": self._wallets.wallets(self._auth.required(req))}
        _no_store(resp)

    def on_post(self, req, resp):
        from .http import read_fields

        caller = self._auth.required(req)
        doc = read_fields(req, {**_ANSWER_FIELDS, "second_factor": bool}, required=("nonce", "signature"), max_len=4096)
        binding = self._wallets.link(
            caller, doc["nonce"], doc["signature"], self._client(req), second_factor=doc.get("second_factor", False)
        )
        resp.status = falcon.HTTP_201
        resp.location = f"/api/v1/users/me/wallets/{binding['address']}"
        resp.media = binding


class MyWallet:
    def __init__(self, wallets, caller_auth, client_info):
        self._wallets = wallets
        self._auth = caller_auth
        self._client = client_info

    def on_delete(self, req, resp, address):
        caller = self._auth.required(req)
        self._wallets.unlink(caller, address, self._client(req))
        resp.status = falcon.HTTP_204


def handle_wallet_refused(req, resp, err: WalletRefused, params):
    """A refused address (400) or challenge/signature (401), with its reason."""
    status = 400 if err.bad_input else 401
    title = "Bad Request" if err.bad_input else "Unauthorized"
    resp.status = falcon.code_to_http_status(status)
    resp.data = problem_body(
        status, title, str(err), "invalid-input" if err.bad_input else "unauthorized", reason=err.reason
    )
    resp.content_type = PROBLEM_JSON
    if not err.bad_input:
        resp.set_header("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{err.reason}"')
    resp.set_header("Cache-Control", "no-store")


def handle_challenge_store_down(req, resp, err, params):
    from .http import handle_account_error

    handle_account_error(req, resp, e.StateUnavailable(str(err)), params)


def add_routes(app, api: str, wallets, caller_auth, client_info) -> None:
    app.add_error_handler(WalletRefused, handle_wallet_refused)
    app.add_error_handler(ChallengeStoreUnavailable, handle_challenge_store_down)
    app.add_route(f"{api}/auth/wallet/challenge", WalletChallenge(wallets, caller_auth, client_info))
    app.add_route(f"{api}/auth/wallet/verify", WalletVerify(wallets, client_info))
    app.add_route(f"{api}/users/me/wallets", MyWallets(wallets, caller_auth, client_info))
    app.add_route(f"{api}/users/me/wallets/{{address}}", MyWallet(wallets, caller_auth, client_info))
