class InvalidCredential(Exception):
    """A credential was presented and is not acceptable: always a 401, never anonymous."""


class AuthUnavailable(Exception):
    """A dependency needed to judge the credential is down (e.g. the denylist): a 503."""
