"""The account flows the HTTP resources call: sign-up, magic link, TOTP, admin edits.

Each flow validates nothing about HTTP (resources do) and raises the errors of
errors.py; it writes in an order that leaves nothing half-done when a
dependency fails in between (see each method).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import logging
import re
import secrets
import time
import urllib.parse

import redis

from . import totp as totp_lib
from .emails import normalize_email
from .errors import (
    AccountError,
    AuthFailed,
    Conflict,
    EmailTaken,
    Forbidden,
    InvalidInput,
    LockedOut,
    MailUnavailable,
    NotFound,
    StateUnavailable,
)
from .step_up import StepUp
from .store import PROFILE_FIELDS

log = logging.getLogger("lucid.pdp.accounts")
# Matched with fullmatch, as the token minter and verifier do (pdp/authn/claims.py):
# with match and `$`, "user\n" passed here and every sign-in of its user was a 500.
ROLE_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_MFA_PREFIX = "lucid:auth:mfa:"
_MFA_TTL_S = 300
_ENROL_TTL_S = 600
_MAX_ROLES = 32


@dataclasses.dataclass(frozen=True)
class Client:
    """Who is asking, as far as the HTTP layer can tell."""

    ip: str = ""
    user_agent: str = ""
    request_id: str = ""


@dataclasses.dataclass(frozen=True)
class Limits:
    login_per_ip_per_minute: int = 20
    login_per_email_per_hour: int = 5
    verify_per_ip_per_minute: int = 30


def user_view(user: dict) -> dict:
    """What the API shows of a user document (never the TOTP secret or recovery hashes)."""

    def iso(value):
        return value.isoformat().replace("+00:00", "Z") if isinstance(value, dt.datetime) else value

    return {
        "id": user["_id"],
        "email": user.get("email"),
        "status": user.get("status", "active"),
        "roles": user.get("roles", []),
        "plan": user.get("plan", "free"),
        "profile": user.get("profile", {}),
        "totp_enabled": "totp" in user,
        "wallets": [w["address"] for w in user.get("wallets", [])],
        "created_at": iso(user.get("created_at")),
        "last_login_at": iso(user.get("last_login_at")),
    }


class SignIn:
    """Magic link, then TOTP when the account has it, then tokens."""

    def __init__(
        self,
        *,
        store,
        links,
        mailer,
        issuer,
        guard,
        box,
        throttle,
        redis_client,
        public_base_url: str,
        service_name: str,
        step_up: StepUp,
        limits: Limits = Limits(),
        clock=time.time,
        background=None,
    ):
        self._store = store
        self._links = links
        self._mailer = mailer
        self._issuer = issuer
        self._guard = guard
        self._box = box
        self._throttle = throttle
        self._redis = redis_client
        self._base = public_base_url.rstrip("/")
        self._service = service_name
        self._limits = limits
        self._step_up = step_up
        self._clock = clock
        # Runs fn(*args) after the response (gevent.spawn under gunicorn);
        # None runs it inline, for callers without an event loop.
        self._background = background or (lambda fn, *args: fn(*args))

    # -- magic link ----------------------------------------------------------------

    def request_link(self, raw_email, client: Client) -> None:
        """Mails a link if the account exists; the caller answers 202 either way.

        Both paths first rehearse the SMTP conversation for the address
        (MAIL, RCPT, RSET: 503 while the server is down, for every address),
        then an existing account's token is stored and its mail sent in the
        background. So the answer and its timing are the same whether or not
        the account exists. If that mail fails, its token is deleted: no
        stored token outlives a mail that was not sent."""
        email = normalize_email(raw_email)
        self._throttle.hit("login_ip", client.ip or "unknown", self._limits.login_per_ip_per_minute, 60)
        self._throttle.hit("login_email", email, self._limits.login_per_email_per_hour, 3600)
        user = self._store.find_by_email(email)
        self._mailer.rehearse(email)
        if user is None:
            return
        token = self._links.create(user["_id"], email)
        self._background(self._send_link, email, token)

    def _send_link(self, email: str, token: str) -> None:
        link = f"{self._base}/api/v1/auth/magic?token={urllib.parse.quote(token)}"
        minutes = max(1, self._links.ttl_s // 60)
        text = (
            f"Sign in to {self._service}:\n\n{link}\n\n"
            f"The link works once, for {minutes} minutes. If you did not ask for it, ignore this mail.\n"
        )
        page = (
            f'<p>Sign in to {html.escape(self._service)}:</p><p><a href="{html.escape(link)}">'
            f"{html.escape(link)}</a></p><p>The link works once, for {minutes} minutes.</p>"
        )
        try:
            self._mailer.send(email, f"Your sign-in link for {self._service}", text, page)
        except MailUnavailable as err:
            self._links.discard(token)
            log.warning("sign-in mail not sent, its link discarded: %s", err)

    def redeem_link(self, token, client: Client) -> dict:
        """A magic token -> tokens (no TOTP) or an MFA challenge (TOTP enrolled)."""
        self._throttle.hit("verify_ip", client.ip or "unknown", self._limits.verify_per_ip_per_minute, 60)
        record = self._links.redeem(token)
        user = self._store.mark_signed_in(record["user_id"], record["email"])
        if user is None:
            # The account was deleted or its email changed since the link was sent.
            raise AuthFailed("magic_link_unknown", "this sign-in link is no longer valid")
        if "totp" not in user:
            return self._issuer.issue(user, amr=["email"], mfa=False, client_ip=client.ip, user_agent=client.user_agent)
        return self.second_factor_challenge(user, ["email"])

    def second_factor_challenge(self, user: dict, amr: list) -> dict:
        """The answer to a first factor (amr) of an account with TOTP: an MFA
        challenge that complete_mfa turns into tokens (also used by wallet sign-in)."""
        challenge = secrets.token_urlsafe(32)
        body = json.dumps({"user_id": user["_id"], "amr": list(amr)})
        try:
            self._redis.set(_MFA_PREFIX + _digest(challenge), body, ex=_MFA_TTL_S)
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        return {
            "mfa_required": True,
            "mfa_token": challenge,
            "expires_in": _MFA_TTL_S,
            "methods": ["totp", "recovery_code"],
        }

    # -- second factor ---------------------------------------------------------------

    def complete_mfa(self, challenge, client: Client, code=None, recovery_code=None) -> dict:
        """An MFA challenge plus a TOTP or recovery code -> tokens with mfa true."""
        self._throttle.hit("verify_ip", client.ip or "unknown", self._limits.verify_per_ip_per_minute, 60)
        if not isinstance(challenge, str) or not 20 <= len(challenge) <= 64:
            raise AuthFailed("mfa_token_invalid", "unknown or expired MFA challenge")
        key = _MFA_PREFIX + _digest(challenge)
        try:
            raw = self._redis.get(key)
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if raw is None:
            raise AuthFailed("mfa_token_invalid", "unknown or expired MFA challenge")
        pending = json.loads(raw)
        user = self._store.get(pending["user_id"])
        if user is None or "totp" not in user:
            raise AuthFailed("mfa_token_invalid", "unknown or expired MFA challenge")
        if recovery_code is not None:
            self._check_recovery_code(user, recovery_code)
            amr = pending["amr"] + ["otp"]
        else:
            self.check_code(user, user["totp"]["secret"], code)
            amr = pending["amr"] + ["otp"]
        try:
            won = self._redis.delete(key) == 1
        except redis.RedisError as err:
            raise StateUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if not won:  # a parallel request with another valid code used the challenge first
            raise AuthFailed("mfa_token_invalid", "unknown or expired MFA challenge")
        return self._issuer.issue(user, amr=amr, mfa=True, client_ip=client.ip, user_agent=client.user_agent)

    def check_code(self, user: dict, sealed: str, code) -> None:
        """Accepts a TOTP code once; AuthFailed totp_invalid / totp_reused, LockedOut."""
        user_id = user["_id"]
        self._guard.check_not_locked(user_id)
        try:
            secret = self._box.open(sealed, user_id)
        except ValueError:
            raise AuthFailed("totp_unavailable", "the TOTP secret cannot be read; use a recovery code") from None
        # Counted before the code is looked at, so parallel guesses share the limit.
        attempt = self._guard.begin_attempt(user_id)
        step = totp_lib.code_step(secret, code, self._clock())
        if step is None:
            self._fail(user_id, attempt)
            raise AuthFailed("totp_invalid", "wrong TOTP code")
        if not self._guard.accept_step(user_id, step):
            self._fail(user_id, attempt)
            raise AuthFailed("totp_reused", "this TOTP code (or a later one) was already used; wait for the next")
        self._guard.clear_failures(user_id)
        if "totp" in user and user["totp"]["secret"] == sealed and self._box.needs_reseal(sealed):
            self._store.reseal_totp(user_id, sealed, self._box.seal(secret, user_id))

    def _check_recovery_code(self, user: dict, code) -> None:
        attempt = self._guard.begin_attempt(user["_id"])
        if (
            not isinstance(code, str)
            or not 1 <= len(code) <= 64
            or not self._store.use_recovery_code(user["_id"], totp_lib.recovery_hash(code))
        ):
            self._fail(user["_id"], attempt)
            raise AuthFailed("recovery_code_invalid", "wrong or already used recovery code")
        self._guard.clear_failures(user["_id"])  # a right answer is not a failure

    def _fail(self, user_id: str, attempt: int) -> None:
        ban = self._guard.attempt_failed(user_id, attempt)
        if ban:
            raise LockedOut("too many wrong codes; the account is locked for a while", ban)

    # -- TOTP enrolment --------------------------------------------------------------

    def enrol_totp(self, caller: dict, issuer_name: str) -> dict:
        """A new secret awaiting confirmation; the active factor is untouched.
        Needs a recent sign-in (step_up.py): a stolen session must not add its own factor."""
        user_id = caller["sub"]
        user = self._require_user(user_id)
        self._step_up.require(caller, user)
        if "totp" in user:
            raise Conflict("TOTP is already enrolled")
        secret = totp_lib.new_secret()
        sealed = self._box.seal(secret, user_id)
        expires = dt.datetime.fromtimestamp(self._clock() + _ENROL_TTL_S, dt.timezone.utc)
        if not self._store.set_totp_pending(user_id, sealed, expires):
            raise Conflict("TOTP is already enrolled")
        uri = totp_lib.provisioning_uri(secret, user.get("email") or user_id, issuer_name)
        return {
            "otpauth_uri": uri,
            "secret": secret,
            "qr_svg": totp_lib.qr_svg(uri),
            "expires_in": _ENROL_TTL_S,
            "confirm": 'POST /api/v1/users/me/totp/confirm {"code": "123456"}',
        }

    def confirm_totp(self, caller: dict, code) -> dict:
        """The first valid code activates the factor; returns the recovery codes (shown once).
        Needs a recent sign-in too: the pending secret may be older than the session that confirms it."""
        user_id = caller["sub"]
        user = self._require_user(user_id)
        self._step_up.require(caller, user)
        pending = user.get("totp_pending")
        if "totp" in user:
            raise Conflict("TOTP is already enrolled")
        if not pending or pending["expires_at"].timestamp() <= self._clock():
            raise Conflict("no TOTP enrolment is waiting; start one with POST /api/v1/users/me/totp")
        self.check_code(user, pending["secret"], code)
        codes = totp_lib.new_recovery_codes()
        if not self._store.activate_totp(user_id, pending["secret"], [totp_lib.recovery_hash(c) for c in codes]):
            raise Conflict("the enrolment changed meanwhile; start again")
        return {
            "totp_enabled": True,
            "recovery_codes": codes,
            "other_sessions_ended": self._end_other_sessions(caller),
            "note": "each recovery code works once; store them offline. Sign in again to get mfa: true.",
        }

    def _end_other_sessions(self, caller: dict) -> int | None:
        """Sessions signed in before TOTP say mfa false and could refresh for days: they end.
        The caller's own stays (it just gave a code). Best effort: the factor is
        active and the recovery codes must reach the user, so a failure here is
        logged and answered as null rather than an error."""
        sid = caller.get("claims", {}).get("sid")
        try:
            return self._issuer.end_others(caller["sub"], sid if isinstance(sid, str) else None, "totp_enrolled")
        except AccountError as err:
            log.warning("TOTP enrolled, but the user's other sessions were not all ended: %s", err)
            return None

    def remove_totp(self, caller: dict, code=None, recovery_code=None, *, audit, client: Client) -> dict:
        """Turns TOTP off: needs a recent session that passed TOTP (step_up.py) and
        a fresh code or recovery code now. Audited, as a change of a security setting."""
        user = self._require_user(caller["sub"])
        self._step_up.require(caller, user)
        if "totp" not in user:
            raise Conflict("TOTP is not enrolled")
        if recovery_code is not None:
            self._check_recovery_code(user, recovery_code)
        else:
            self.check_code(user, user["totp"]["secret"], code)
        record = audit.write(
            actor=caller["sub"],
            action="user.totp.remove",
            target=user["_id"],
            before={"totp_enabled": True},
            after={"totp_enabled": False},
            request_id=client.request_id,
        )
        if not self._store.remove_totp(user["_id"], user["totp"]["secret"]):
            audit.mark_not_applied(record, "changed meanwhile")
            raise Conflict("the TOTP factor changed meanwhile")
        return {"totp_enabled": False}

    def _require_user(self, user_id: str) -> dict:
        user = self._store.get(user_id)
        if user is None:
            raise NotFound("no such user")
        return user


class Accounts:
    """Sign-up, profile, and the admin edits (audited)."""

    def __init__(self, *, store, audit, signup_mode: str, plans: tuple[str, ...]):
        self._store = store
        self._audit = audit
        self._signup_mode = signup_mode
        self._plans = plans

    @property
    def audit(self):
        return self._audit

    @property
    def signup_mode(self) -> str:
        return self._signup_mode

    def sign_up(self, doc: dict, caller: dict | None, client: Client) -> dict:
        """Open mode: anyone; admin mode: role admin. Roles/plan only from an admin (audited)."""
        is_admin = bool(caller) and "admin" in caller.get("roles", [])
        if self._signup_mode == "admin" and not is_admin:
            if not caller:
                raise AuthFailed("authentication_required", "sign-up is by an admin only (SIGNUP_MODE=admin)")
            raise Forbidden("sign-up is by an admin only (SIGNUP_MODE=admin)")
        email = normalize_email(doc.get("email"))
        profile = validate_profile({k: v for k, v in doc.items() if k in PROFILE_FIELDS})
        roles = ["user"]
        plan = "free"
        if "roles" in doc or "plan" in doc:
            if not is_admin:
                raise Forbidden("only an admin may set roles or plan")
            roles = validate_roles(doc.get("roles", roles))
            plan = self.validate_plan(doc.get("plan", plan))
        if is_admin:
            record = self._audit.write(
                actor=caller["sub"],
                action="user.create",
                target=email,
                before={},
                after={"email": email, "roles": roles, "plan": plan},
                request_id=client.request_id,
            )
        try:
            user = self._store.create_user(email, roles=roles, plan=plan, profile=profile)
        except EmailTaken:
            if is_admin:
                self._audit.mark_not_applied(record, "email taken")
            raise
        return user

    def get(self, user_id: str) -> dict:
        user = self._store.get(user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    def update_profile(self, user_id: str, fields: dict) -> dict:
        user = self._store.update_profile(user_id, validate_profile(fields))
        if user is None:
            raise NotFound("no such user")
        return user

    def set_roles(self, admin: dict, user_id: str, roles, client: Client) -> dict:
        return self._admin_change(admin, user_id, "roles", validate_roles(roles), client)

    def set_plan(self, admin: dict, user_id: str, plan, client: Client) -> dict:
        return self._admin_change(admin, user_id, "plan", self.validate_plan(plan), client)

    def _admin_change(self, admin: dict, user_id: str, field: str, value, client: Client) -> dict:
        """Audit record first, then a compare-and-set on the old value: no
        change is ever unaudited, and a racing edit fails with 409."""
        user = self.get(user_id)
        before = user.get(field)
        record = self._audit.write(
            actor=admin["sub"],
            action=f"user.{field}.set",
            target=user_id,
            before={field: before},
            after={field: value},
            request_id=client.request_id,
        )
        updated = self._store.compare_and_set(user_id, {field: before}, {field: value})
        if updated is None:
            self._audit.mark_not_applied(record, "changed meanwhile")
            raise Conflict(f"the user's {field} changed meanwhile; read it again")
        return updated

    def validate_plan(self, plan) -> str:
        if not isinstance(plan, str) or plan not in self._plans:
            raise InvalidInput("plan must be one of " + ", ".join(self._plans))
        return plan


def validate_roles(roles) -> list[str]:
    if (
        not isinstance(roles, list)
        or not 1 <= len(roles) <= _MAX_ROLES
        or not all(isinstance(r, str) and ROLE_PATTERN.fullmatch(r) for r in roles)
    ):
        raise InvalidInput(f"roles must be a list of 1 to {_MAX_ROLES} names matching ^{ROLE_PATTERN.pattern}$")
    return sorted(set(roles))


def validate_profile(fields: dict) -> dict:
    clean = {}
    for name, value in fields.items():
        limit = PROFILE_FIELDS.get(name)
        if limit is None:
            raise InvalidInput(f"unknown field {name!r}")
        if not isinstance(value, str) or len(value) > limit or not value.isprintable():
            raise InvalidInput(f"{name} must be printable text of at most {limit} characters")
        clean[name] = value.strip()
    return clean


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
