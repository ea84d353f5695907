"""What can go wrong in the account flows; the HTTP layer maps each to a status."""

from __future__ import annotations


class AccountError(Exception):
    """Base class; str(err) is safe to show to the caller."""


class StoreUnavailable(AccountError):
    """MongoDB did not answer (503, readiness says mongodb)."""


class MailUnavailable(AccountError):
    """The SMTP server did not take the message (503, readiness says smtp)."""


class StateUnavailable(AccountError):
    """Redis did not answer (503)."""


class InvalidInput(AccountError):
    """The request is malformed or a field is invalid (400)."""


class AuthFailed(AccountError):
    """A credential was refused (401); reason is a short stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class ReauthRequired(AuthFailed):
    """A valid session, but signed in too long ago or with too few factors for
    this change (401, WWW-Authenticate error="insufficient_user_authentication")."""

    def __init__(self, detail: str, max_age_s: int):
        super().__init__("reauth_required", detail)
        self.max_age_s = int(max_age_s)


class LockedOut(AccountError):
    """Too many attempts (429 with Retry-After)."""

    def __init__(self, detail: str, retry_after_s: int):
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class Forbidden(AccountError):
    """Authenticated but not allowed (403)."""


class NotFound(AccountError):
    """No such user (404)."""


class Conflict(AccountError):
    """A unique key is taken, or the state changed meanwhile (409)."""


class EmailTaken(Conflict):
    pass


class WalletTaken(Conflict):
    pass
