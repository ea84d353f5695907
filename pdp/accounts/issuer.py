"""TokenIssuer: the access + refresh token pair a completed sign-in gets.

issue() is what every sign-in method calls once all of the account's factors
are verified (magic link, magic link + TOTP, a hardware wallet): it starts a
refresh family in Redis, records the session in MongoDB, and mints the
access token. If MongoDB refuses the session record the family is revoked
again, so no token exists for a session nobody can see or end.
"""

from __future__ import annotations

import datetime as dt
import time

from ..authn.tokens import mint_access_token
from .errors import AccountError, AuthFailed, StateUnavailable


class TokenIssuer:
    """Args:
    families: RefreshFamilies.
    store: UserStore (session metadata; current roles and plan on refresh).
    signing_key, algorithm: the HS* secret and algorithm (JWT_SECRET_KEY, JWT_ALGORITHM).
    access_s: access token lifetime (JWT_ACCESS_TOKEN_EXPIRE_MINUTES * 60).
    issuer, audience: JWT_ISSUER / JWT_AUDIENCE when set.
    denylist: RedisDenylist; ending a session (logout, refresh-token reuse)
        denylists every access token minted for it, not only the one presented.
    """

    def __init__(
        self,
        families,
        store,
        *,
        signing_key,
        algorithm: str,
        access_s: int,
        issuer: str | None = None,
        audience: str | None = None,
        denylist=None,
        clock=time.time,
    ):
        self._families = families
        self._store = store
        self._key = signing_key
        self._alg = algorithm
        self._access_s = int(access_s)
        self._issuer = issuer
        self._audience = audience
        self._denylist = denylist
        self._clock = clock

    def issue(self, user: dict, *, amr: list, mfa: bool, client_ip: str = "", user_agent: str = "") -> dict:
        """The token response for a user whose factors are all verified; now is its auth_time."""
        auth_time = int(self._clock())
        family_id, refresh = self._families.start(user["_id"], mfa=mfa, amr=amr, auth_time=auth_time)
        try:
            self._store.record_session(
                family_id,
                user["_id"],
                amr=amr,
                mfa=mfa,
                expires_at=self._refresh_expiry(),
                client_ip=client_ip,
                user_agent=user_agent,
            )
        except AccountError:
            self._families.revoke(family_id, "not_recorded")
            raise
        return self._response(user, family_id, refresh, amr, mfa, auth_time)

    def refresh(self, token) -> dict:
        """Rotates a refresh token; the new access token carries the account's
        current roles and plan, and the family's authentication level and auth_time."""
        family = self._families.peek(token)
        user = self._store.get(family.user_id)
        if user is None:
            self._families.revoke(family.family_id, "account_gone")
            raise AuthFailed("invalid_refresh_token", "the account no longer exists")
        try:
            family, new = self._families.rotate(token)
        except AuthFailed as err:
            if err.reason == "refresh_token_reused":
                # The family is revoked: so are the access tokens a thief minted from it.
                self._revoke_access(family.family_id)
            raise
        self._store.touch_session(family.family_id, self._refresh_expiry())
        return self._response(user, family.family_id, new, family.amr, family.mfa, family.auth_time)

    def family(self, token):
        """The (live) family of a refresh token, without using it; AuthFailed otherwise."""
        return self._families.peek(token)

    def end(self, family_id: str, reason: str = "logout") -> None:
        self._families.revoke(family_id, reason)
        self._revoke_access(family_id)
        self._store.end_session(family_id, reason)

    def end_others(self, user_id: str, keep: str | None, reason: str) -> int:
        """Ends every live session of the user but keep (a family id); returns how many."""
        others = [f for f in self._store.live_session_ids(user_id) if f != keep]
        for family_id in others:
            self.end(family_id, reason)
        return len(others)

    def _revoke_access(self, family_id: str) -> None:
        """Denylists the family's access tokens still valid: one presented at
        logout is not the only one (an earlier one, from before a refresh, may
        be in someone else's hands)."""
        if self._denylist is None:
            return
        now = self._clock()
        for jti, exp in self._families.live_access(family_id):
            try:
                self._denylist.revoke(self._issuer or "", jti, int(exp - now) + 60)
            except Exception as err:  # noqa: BLE001 - any Redis failure: the token stays valid, so say so
                raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None

    def _refresh_expiry(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock() + self._families.ttl_s, dt.timezone.utc)

    def _response(self, user: dict, family_id: str, refresh: str, amr: list, mfa: bool, auth_time) -> dict:
        access, claims = mint_access_token(
            self._key,
            self._alg,
            sub=user["_id"],
            roles=user.get("roles", []),
            plan=user.get("plan", "free"),
            mfa=mfa,
            lifetime_s=self._access_s,
            issuer=self._issuer,
            audience=self._audience,
            extra_claims={"sid": family_id, "amr": amr},
            now=self._clock(),
            auth_time=auth_time,
        )
        self._families.note_access(family_id, claims["jti"], int(claims["exp"]))
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self._access_s,
            "refresh_token": refresh,
            "refresh_expires_in": self._families.ttl_s,
            "mfa": mfa,
            "amr": amr,
            "user_id": user["_id"],
        }
