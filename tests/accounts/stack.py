"""The sign-in stack of the tests: Redis, SecantusDB, an SMTP sink and the PDP, each a real process."""

import base64
import contextlib
import re
import secrets
import time

import pymongo
import redis
import requests

from pdp.authn.tokens import mint_access_token
from tests.support.mongo_server import start_mongo
from tests.support.pdp_process import start_pdp
from tests.support.processes import ROOT
from tests.support.redis_server import start_redis
from tests.support.smtp_server import start_smtp

SECRET = "test-secret-" + "s" * 32
PUBLIC_BASE_URL = "https://gateway.example"


def totp_key() -> str:
    return "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def signin_env(redis_url: str, mongodb_uri: str, smtp_url: str, **extra) -> dict:
    env = {
        "REDIS_URL": redis_url,
        "MONGODB_URI": mongodb_uri,
        "SMTP_URL": smtp_url,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "TOTP_ENCRYPTION_KEYS": totp_key(),
        "JWT_SECRET_KEY": SECRET,
        "SIGNUP_MODE": "open",
        "POLICY_DIR": str(ROOT / "policies"),
        "JWT_REVOCATION_CACHE_S": "0",
        "DECISION_LOG": "off",
        "LOG_LEVEL": "warning",
        "MONGODB_TIMEOUT_MS": "1500",
        "SMTP_TIMEOUT_MS": "2000",
        # Tests reach the PDP from 127.0.0.1 and say who the client is in X-Forwarded-For.
        "AUTH_LOGIN_PER_IP_PER_MINUTE": "20",
        "AUTH_VERIFY_PER_IP_PER_MINUTE": "1000",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Stack:
    """Starts what it is told to; stop() stops everything it started."""

    def __init__(self, workers: int = 1, **env):
        self.redis = start_redis()
        self.mongo = start_mongo()
        self.mail = start_smtp()
        self.env = signin_env(self.redis.redis_url, self.mongo.mongodb_uri, self.mail.smtp_url, **env)
        try:
            self.pdp = start_pdp(self.env, workers=workers)
        except Exception:
            self.stop()
            raise
        self.url = self.pdp.url
        self.api = self.url + "/api/v1"
        self.db = pymongo.MongoClient(self.mongo.mongodb_uri, serverSelectionTimeoutMS=3000).get_default_database()
        self.redis_client = redis.Redis.from_url(self.redis.redis_url)
        self._ip = 0

    def restart_pdp(self, **env):
        """A new PDP on the same Redis, MongoDB and SMTP (a new port)."""
        self.pdp.stop()
        self.env.update({k: str(v) for k, v in env.items()})
        self.env.pop("AUTH_PORT", None)
        self.pdp = start_pdp(self.env, workers=1)
        self.url = self.pdp.url
        self.api = self.url + "/api/v1"

    def stop(self):
        for name in ("pdp", "mail", "mongo", "redis"):
            server = getattr(self, name, None)
            if server is not None:
                server.stop()

    def client_ip(self) -> str:
        """A fresh client address (TEST-NET-2), so per-IP limits of one test do not leak into the next."""
        self._ip += 1
        return f"198.51.100.{self._ip % 250 + 1}"

    def post(self, path, body=None, token=None, ip=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.setdefault("X-Forwarded-For", ip or self.client_ip())
        return requests.post(self.api + path, json=body, headers=headers, timeout=20, **kw)

    def get(self, path, token=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(self.api + path, headers=headers, timeout=20, **kw)

    def delete(self, path, body=None, token=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        headers.setdefault("X-Forwarded-For", self.client_ip())
        return requests.delete(self.api + path, json=body, headers=headers, timeout=20, **kw)

    def put(self, path, body, token=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.put(self.api + path, json=body, headers=headers, timeout=20, **kw)

    # -- flows ---------------------------------------------------------------

    def sign_up(self, email: str) -> dict:
        response = self.post("/users", {"email": email})
        assert response.status_code == 201, response.text
        return response.json()

    def magic_token(self, email: str, ip: str | None = None) -> str:
        """Asks for a link and returns the token from the mail that arrives."""
        before = len(self.mail.wait_for(email, 0, timeout=0))
        response = self.post("/auth/login", {"email": email}, ip=ip)
        assert response.status_code == 202, response.text
        mails = self.mail.wait_for(email, before + 1)
        assert len(mails) == before + 1, "no mail arrived"
        return link_token(mails[-1])

    def sign_in(self, email: str) -> dict:
        """A magic-link sign-in (the account has no TOTP); returns the token response."""
        response = self.post("/auth/verify", {"token": self.magic_token(email)})
        assert response.status_code == 200, response.text
        return response.json()

    def admin_token(self, sub: str = "root") -> str:
        return mint_access_token(
            SECRET, "HS256", sub=sub, roles=["admin", "user"], plan="enterprise", mfa=True, lifetime_s=600
        )[0]


def token_for(user_id, *, auth_time, mfa=False, lifetime_s=600) -> str:
    """An access token of this stack's signer for user_id, signed in at auth_time (None: no auth_time claim)."""
    return mint_access_token(
        SECRET, "HS256", sub=user_id, roles=["user"], plan="free", mfa=mfa, lifetime_s=lifetime_s, auth_time=auth_time
    )[0]


def link_token(mail) -> str:
    text = mail.get_body(("plain",)).get_content()
    match = re.search(r"(\S+/api/v1/auth/magic\?token=)([A-Za-z0-9_-]+)", text)
    assert match, text
    assert match.group(1).startswith(PUBLIC_BASE_URL + "/"), match.group(1)
    return match.group(2)


def away_from_step_edge():
    """Waits out the last seconds of a 30 s TOTP step, so codes made for
    steps -1, 0 and +1 still name those steps when the PDP checks them."""
    if time.time() % 30 > 25:
        time.sleep(30 - time.time() % 30 + 0.2)


def code_at(secret: str, steps_from_now: int) -> str:
    import pyotp

    return pyotp.TOTP(secret).at(time.time() + 30 * steps_from_now)


@contextlib.contextmanager
def behind_the_proxy():
    """A Stack behind the real proxy (default routes, auth routed to the PDP) and an
    echo session backend; yields (stack, proxy URL) and stops all three."""
    from tests.proxy.proxy_helpers import start_echo, start_proxy

    with contextlib.ExitStack() as running:
        stack = Stack()
        running.callback(stack.stop)
        echo = start_echo("session-management")
        running.callback(echo.stop)
        proxy = start_proxy(
            env={
                "PDP_URL": stack.url,
                "AUTH_SERVICE_URL": stack.url,
                "SESSION_MANAGEMENT_URL": echo.url,
                "SSL_ENABLED": "false",
            }
        )
        running.callback(proxy.stop)
        yield stack, proxy.url
