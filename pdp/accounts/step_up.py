"""Step-up re-authentication ("sudo mode") for changes to an account's sign-in factors.

A stolen access token, or a refresh token that keeps a session alive for
days, must not be enough to enrol TOTP or link a wallet: either makes the
thief's factor a way into the account (TOTP enrolled by them locks the owner
out). So those changes need a session that signed in within REAUTH_MAX_AGE_S
(the access token's auth_time, OIDC's max_age) and, on an account that has
TOTP, one that passed it (mfa). Otherwise ReauthRequired: a 401 whose
WWW-Authenticate says error="insufficient_user_authentication" (RFC 9470).

The check is here, where the change is made: the policy does not see auth_time.
"""

from __future__ import annotations

import time

from .errors import ReauthRequired


class StepUp:
    """Args: max_age_s (REAUTH_MAX_AGE_S): how long after signing in a session may change factors."""

    def __init__(self, max_age_s: int, clock=time.time):
        self.max_age_s = int(max_age_s)
        self._clock = clock

    def require(self, caller: dict, user: dict) -> None:
        """Raises ReauthRequired unless the caller signed in recently enough, with
        every factor the account (user, its stored document) has."""
        auth_time = caller.get("claims", {}).get("auth_time")
        # A token without auth_time (an older session, or an IdP's) counts as signed in too long ago;
        # one with it was checked when verified (authn/claims.py check_auth_time: whole seconds).
        if auth_time is None:
            raise ReauthRequired(
                "sign in again: this change needs a session that says when it signed in", self.max_age_s
            )
        if self._clock() - auth_time > self.max_age_s:
            raise ReauthRequired(
                f"sign in again: this change needs a sign-in within the last {self.max_age_s} seconds", self.max_age_s
            )
        if "totp" in user and not caller.get("mfa"):
            raise ReauthRequired("sign in again with your TOTP code: this change needs both factors", self.max_age_s)
