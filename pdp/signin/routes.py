"""Builds the sign-in service from settings and mounts its routes (paths as the gateway sees them)."""

from __future__ import annotations

import dataclasses
import time

from ..accounts.audit import AuditLog
from ..accounts.errors import AccountError
from ..accounts.issuer import TokenIssuer
from ..accounts.magic_links import MagicLinks
from ..accounts.mailer import Mailer
from ..accounts.refresh import RefreshFamilies
from ..accounts.secret_box import SecretBox
from ..accounts.service import Accounts, Limits, SignIn
from ..accounts.step_up import StepUp
from ..accounts.store import UserStore, connect_database
from ..accounts.throttle import Throttle
from ..accounts.totp import TotpGuard
from .auth import Login, Logout, Refresh, Status, Verify
from .business_metrics import BusinessMetrics
from .http import CallerAuth, ClientInfo, handle_account_error
from .magic_page import MagicPage
from .users import AdminUserField, Me, Totp, TotpConfirm, UserItem, Users

API = "/api/v1"
_CHECK_CACHE_S = 2.0


@dataclasses.dataclass
class SignInService:
    settings: object
    store: UserStore
    signin: SignIn
    accounts: Accounts
    issuer: TokenIssuer
    mailer: Mailer
    metrics: BusinessMetrics
    denylist: object
    wallets: object = None  # WalletSignIn, None when WALLET_SIGNIN_ENABLED=false
    _checked: tuple | None = None

    def checks(self) -> dict:
        """Readiness of the auth service's own dependencies.

        Each probe has a 1 s deadline and the answer is reused for
        _CHECK_CACHE_S: a kubelet probing every few seconds (with a short
        timeout of its own) never waits on a slow SMTP server, and never
        opens an SMTP connection per probe."""
        now = time.monotonic()
        if self._checked is None or now - self._checked[0] > _CHECK_CACHE_S:
            self._checked = (now, {"mongodb": self.store.ping(1.0), "smtp": self.mailer.probe(1.0)})
        return dict(self._checked[1])


def build(settings, redis_client, denylist, registry, db=None) -> SignInService:
    """Everything the sign-in routes need, from settings; no network I/O except index creation."""
    db = db if db is not None else connect_database(settings.mongodb_uri, settings.mongodb_timeout_ms)
    store = UserStore(db)
    try:
        store.ensure_indexes()
    except AccountError as err:
        # Decisions do not need MongoDB: start anyway; writes retry the indexes first.
        import logging

        logging.getLogger("lucid.pdp.accounts").warning("indexes not created yet: %s", err)
    families = RefreshFamilies(redis_client, settings.jwt_refresh_days * 86400, settings.refresh_reuse_grace_s)
    issuer = TokenIssuer(
        families,
        store,
        signing_key=settings.jwt_secret_key,
        algorithm=settings.jwt_algorithms[0],
        access_s=settings.jwt_access_minutes * 60,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        denylist=denylist,
    )
    mailer = Mailer(settings.smtp_url, settings.mail_from, settings.smtp_timeout_ms / 1000)
    guard = TotpGuard(
        redis_client,
        max_retries=settings.totp_max_retries,
        find_time_s=settings.totp_find_time_s,
        ban_time_s=settings.totp_ban_time_s,
    )
    limits = Limits(
        login_per_ip_per_minute=settings.login_per_ip_per_minute,
        login_per_email_per_hour=settings.login_per_email_per_hour,
        verify_per_ip_per_minute=settings.verify_per_ip_per_minute,
    )
    step_up = StepUp(settings.reauth_max_age_s)  # one rule for TOTP and wallet changes
    signin = SignIn(
        store=store,
        links=MagicLinks(redis_client, settings.magic_link_minutes * 60),
        mailer=mailer,
        issuer=issuer,
        guard=guard,
        box=SecretBox(settings.totp_encryption_keys),
        throttle=Throttle(redis_client),
        redis_client=redis_client,
        public_base_url=settings.public_base_url,
        service_name=settings.service_name,
        limits=limits,
        step_up=step_up,
        background=_spawn,
    )
    audit = AuditLog(db)
    accounts = Accounts(store=store, audit=audit, signup_mode=settings.signup_mode, plans=settings.account_plans)
    wallets = (
        build_wallets(settings, redis_client, store, audit, issuer, signin, step_up) if settings.wallet_signin else None
    )
    return SignInService(
        settings, store, signin, accounts, issuer, mailer, BusinessMetrics(store, registry), denylist, wallets
    )


def build_wallets(settings, redis_client, store, audit, issuer, signin, step_up):
    """Wallet sign-in; its EIP-4361 domain and URI come from settings, never from a request."""
    import urllib.parse

    from ..wallets.challenges import Challenges
    from ..wallets.service import WalletSignIn

    base = settings.public_base_url or ""
    domain = settings.wallet_domain or urllib.parse.urlsplit(base).netloc.lower()
    challenges = Challenges(
        redis_client,
        settings.wallet_challenge_ttl_s,
        domain=domain,
        uri=settings.wallet_uri or base,
        service_name=settings.service_name,
        chain_ids={"ethereum": settings.wallet_ethereum_chain_id, "tron": settings.wallet_tron_chain_id},
    )
    return WalletSignIn(
        challenges=challenges,
        store=store,
        audit=audit,
        issuer=issuer,
        signin=signin,
        throttle=Throttle(redis_client),
        per_ip_per_minute=settings.verify_per_ip_per_minute,
        signup_mode=settings.signup_mode,
        step_up=step_up,
    )


def _spawn(fn, *args):
    """The gunicorn workers are gevent's: a greenlet outlives the request that started it."""
    import gevent

    gevent.spawn(fn, *args)


def add_routes(app, service: SignInService, authenticator) -> None:
    s = service
    auth = CallerAuth(authenticator)
    client = ClientInfo(s.settings.auth_trusted_proxies)
    app.add_error_handler(AccountError, handle_account_error)
    app.add_route(f"{API}/auth/login", Login(s.signin, client))
    app.add_route(f"{API}/auth/verify", Verify(s.signin, client))
    app.add_route(f"{API}/auth/magic", MagicPage(s.signin, client, s.settings.service_name))
    app.add_route(f"{API}/auth/refresh", Refresh(s.issuer))
    app.add_route(f"{API}/auth/logout", Logout(s.issuer, auth, s.denylist))
    app.add_route(f"{API}/auth/status", Status(auth))
    app.add_route(f"{API}/users", Users(s.accounts, auth, client))
    app.add_route(f"{API}/users/me", Me(s.accounts, auth))
    app.add_route(f"{API}/users/me/totp", Totp(s.signin, auth, s.settings.totp_issuer, s.accounts, client))
    app.add_route(f"{API}/users/me/totp/confirm", TotpConfirm(s.signin, auth))
    app.add_route(f"{API}/users/{{user_id}}", UserItem(s.accounts, auth))
    app.add_route(f"{API}/users/{{user_id}}/roles", AdminUserField("roles", list, s.accounts.set_roles, auth, client))
    app.add_route(f"{API}/users/{{user_id}}/plan", AdminUserField("plan", str, s.accounts.set_plan, auth, client))
    if s.wallets is not None:
        from .wallets import add_routes as add_wallet_routes

        add_wallet_routes(app, API, s.wallets, auth, client)
