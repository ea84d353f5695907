"""The wallet flows the HTTP resources call: challenge, sign-in, link, unlink.

- Sign-in: a linked wallet's signature over a sign-in challenge gets the same
  token pair as a magic link (TokenIssuer.issue, amr ["hwk"]). An account with
  TOTP still answers its second factor (an MFA challenge, as after a magic
  link) unless the wallet was linked as a hardware second factor: then the
  wallet alone is both factors and the tokens carry mfa true.
- An unknown wallet signs up while sign-up is open (SIGNUP_MODE=open), as a
  first social sign-in does at Auth0 or Kratos: a new active account with no
  email, the wallet its credential (``account_created: true`` in the answer).
  Otherwise it gets 401 ``wallet_not_linked``: an admin creates accounts, and
  the user links the wallet from a signed-in one. Only the wallet's owner can
  learn either (the signature must be valid first): nothing about accounts shows.
- Link: a signature over a "link" challenge made for this very account, so a
  sign-in signature, or one made for another account, links nothing.
  Audited before the change (AuditLog), like every admin action.
- Link and unlink change how the account signs in: both need a recent
  sign-in with every factor the account has (pdp/accounts/step_up.py), so a
  stolen session cannot add the thief's wallet.
"""

from __future__ import annotations

from ..accounts import errors as e
from ..accounts.step_up import StepUp
from ..accounts.store import new_user_id
from .addresses import normalize_address
from .errors import WalletRefused
from .verification import verify_challenge_signature

AMR = "hwk"  # RFC 8176: proof of possession of a hardware-secured key


class WalletSignIn:
    """Args:
    challenges: Challenges (Redis).
    store: UserStore; audit: AuditLog; issuer: TokenIssuer.
    signin: SignIn, for the MFA challenge of accounts with TOTP.
    throttle: Throttle; per_ip_per_minute: challenge and verify requests per client IP.
    signup_mode: SIGNUP_MODE; "open" lets an unknown wallet create its account.
    step_up: StepUp (REAUTH_MAX_AGE_S) for link and unlink.
    """

    def __init__(
        self,
        *,
        challenges,
        store,
        audit,
        issuer,
        signin,
        throttle,
        per_ip_per_minute: int,
        step_up: StepUp,
        signup_mode: str = "admin",
    ):
        self._signup_mode = signup_mode
        self._step_up = step_up
        self._challenges = challenges
        self._store = store
        self._audit = audit
        self._issuer = issuer
        self._signin = signin
        self._throttle = throttle
        self._per_ip = per_ip_per_minute

    def challenge(self, chain, address, client, *, purpose: str = "sign_in", caller: dict | None = None) -> dict:
        self._throttle.hit("wallet_ip", client.ip or "unknown", self._per_ip, 60)
        if purpose == "link" and caller is None:
            raise e.AuthFailed("authentication_required", "a link challenge needs the account's bearer access token")
        user_id = caller["sub"] if purpose == "link" else None
        return self._challenges.issue(chain, address, purpose=purpose, user_id=user_id).public()

    def sign_in(self, nonce, signature, client) -> dict:
        """A signed sign-in challenge -> tokens, or an MFA challenge (TOTP, wallet not a second factor)."""
        self._throttle.hit("verify_ip", client.ip or "unknown", self._per_ip, 60)
        challenge = self._challenges.take(nonce)
        if challenge.purpose != "sign_in":
            raise WalletRefused("challenge_purpose", "this challenge was made for linking a wallet, not for signing in")
        address = verify_challenge_signature(challenge, signature)
        user = self._store.find_by_wallet(address)
        created = False
        if user is None:
            if self._signup_mode != "open":
                raise e.AuthFailed(
                    "wallet_not_linked",
                    "no account has this wallet: sign in another way and link it at POST /api/v1/users/me/wallets",
                )
            user, created = self._sign_up(challenge.chain, address, client)
        binding = _binding(user, address)
        if binding is None:  # unlinked between the two reads
            raise e.AuthFailed("wallet_not_linked", "no account has this wallet")
        if user.get("status") != "active":
            raise e.AuthFailed("account_inactive", "this account is not active")
        if binding.get("second_factor"):
            answer = self._issuer.issue(user, amr=[AMR], mfa=True, client_ip=client.ip, user_agent=client.user_agent)
        elif "totp" in user:
            answer = self._signin.second_factor_challenge(user, [AMR])
        else:
            answer = self._issuer.issue(user, amr=[AMR], mfa=False, client_ip=client.ip, user_agent=client.user_agent)
        return {**answer, "account_created": True} if created else answer

    def _sign_up(self, chain: str, address: str, client) -> tuple[dict, bool]:
        """A new wallet-only account (audited: the creation and the link), or, when
        a parallel sign-in of the same wallet created it first, that account."""
        user_id = new_user_id()
        binding = {"address": address, "chain": chain, "second_factor": False}
        records = [
            self._audit.write(
                actor=user_id,
                action="user.create",
                target=user_id,
                before={},
                after={"via": "wallet", "roles": ["user"], "plan": "free"},
                request_id=client.request_id,
            ),
            self._audit.write(
                actor=user_id,
                action="wallet.link",
                target=user_id,
                before={},
                after=binding,
                request_id=client.request_id,
            ),
        ]
        try:
            return self._store.create_wallet_user(user_id, binding), True
        except e.AccountError as err:
            for record in records:
                self._audit.mark_not_applied(
                    record, "wallet taken" if isinstance(err, e.WalletTaken) else "store error"
                )
            if not isinstance(err, e.WalletTaken):
                raise
        user = self._store.find_by_wallet(address)
        if user is None:
            raise e.AuthFailed("wallet_not_linked", "no account has this wallet")
        return user, False

    def link(self, caller: dict, nonce, signature, client, *, second_factor: bool = False) -> dict:
        self._throttle.hit("verify_ip", client.ip or "unknown", self._per_ip, 60)
        user = self._store.get(caller["sub"])
        if user is None:
            raise e.NotFound("no such user")
        # Before the challenge is taken: after signing in again, the same signature still links.
        # On an account with TOTP this also needs mfa, so no first factor alone makes a wallet that skips TOTP.
        self._step_up.require(caller, user)
        challenge = self._challenges.take(nonce)
        if challenge.purpose != "link" or challenge.user_id != caller["sub"]:
            raise WalletRefused("challenge_purpose", "this challenge was not made for linking a wallet to this account")
        address = verify_challenge_signature(challenge, signature)
        binding = {"address": address, "chain": challenge.chain, "second_factor": bool(second_factor)}
        record = self._audit.write(
            actor=caller["sub"],
            action="wallet.link",
            target=caller["sub"],
            before={},
            after=binding,
            request_id=client.request_id,
        )
        try:
            added = self._store.add_wallet(caller["sub"], binding)
        except e.WalletTaken:
            self._audit.mark_not_applied(record, "wallet taken")
            raise
        except e.AccountError:
            self._audit.mark_not_applied(record, "store error")
            raise
        if not added:
            self._audit.mark_not_applied(record, "no such user")
            raise e.NotFound("no such user")
        return binding

    def unlink(self, caller: dict, address, client) -> None:
        canonical = _any_chain_address(address)
        user = self._store.get(caller["sub"])
        if user is None:
            raise e.NotFound("no such user")
        self._step_up.require(caller, user)
        binding = _binding(user, canonical)
        if binding is None:
            raise e.NotFound("this account has no such wallet")
        before = {k: binding.get(k) for k in ("address", "chain", "second_factor")}
        record = self._audit.write(
            actor=caller["sub"],
            action="wallet.unlink",
            target=caller["sub"],
            before=before,
            after={},
            request_id=client.request_id,
        )
        if not self._store.remove_wallet(caller["sub"], canonical):
            self._audit.mark_not_applied(record, "already unlinked")
            raise e.NotFound("this account has no such wallet")

    def wallets(self, caller: dict) -> list[dict]:
        user = self._store.get(caller["sub"])
        if user is None:
            raise e.NotFound("no such user")
        return [wallet_view(w) for w in user.get("wallets", [])]


def wallet_view(binding: dict) -> dict:
    added = binding.get("added_at")
    return {
        "address": binding["address"],
        "chain": binding.get("chain"),
        "second_factor": bool(binding.get("second_factor")),
        "added_at": added.isoformat().replace("+00:00", "Z") if hasattr(added, "isoformat") else added,
    }


def _binding(user, address: str):
    if user is None:
        return None
    return next((w for w in user.get("wallets", []) if w.get("address") == address), None)


def _any_chain_address(address) -> str:
    """A path's address on whichever chain its form names (0x...: Ethereum, T...: TRON)."""
    chain = "ethereum" if isinstance(address, str) and address[:2].lower() == "0x" else "tron"
    return normalize_address(chain, address)
