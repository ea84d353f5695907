"""Single-use wallet challenges in Redis, keyed by their nonce.

A challenge is the exact EIP-4361 text handed to the client plus what it was
for (sign-in, or linking to one account). Verification takes it with GETDEL,
one atomic command, so of two requests with the same nonce exactly one gets
it and a replay finds nothing. A challenge is taken even when the signature
then fails: one signature attempt per challenge, and the client asks anew.

The key lives ``ttl_s + _GRACE_S``; the expiry itself is the stored
``expires_at``, checked on take (Redis's expiry timing is not relied on, and
a late answer can say "expired" rather than "unknown").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import secrets
import time

import redis

from .addresses import normalize_address
from .errors import ChallengeStoreUnavailable, WalletRefused
from .messages import SignInMessage

PURPOSES = ("sign_in", "link")
_PREFIX = "lucid:wallet:challenge:"
_GRACE_S = 60
_NONCE_BYTES = 16  # 128 bits; EIP-4361 asks for at least 64, the issue for at least 96
_NONCE = re.compile(r"^[0-9a-f]{32}$")


@dataclasses.dataclass(frozen=True)
class Challenge:
    nonce: str
    chain: str
    address: str  # canonical form
    message: str  # the exact text to sign
    purpose: str  # "sign_in" | "link"
    user_id: str | None  # the account a "link" challenge is for
    expires_at: float  # epoch seconds

    def public(self) -> dict:
        """What the client gets back from POST .../challenge."""
        return {
            "nonce": self.nonce,
            "chain": self.chain,
            "address": self.address,
            "message": self.message,
            "purpose": self.purpose,
            "expires_at": _iso(self.expires_at),
            "expires_in": max(0, int(self.expires_at - time.time())),
        }


class Challenges:
    """Args:
    redis_client: redis-py client (single, Sentinel or Cluster: one key per command).
    ttl_s: how long a challenge may be answered (WALLET_CHALLENGE_TTL_S, 300).
    domain, uri: WALLET_DOMAIN / WALLET_URI, the origin the wallet shows.
    chain_ids: {"ethereum": int, "tron": int}.
    service_name: named in the statement.
    """

    def __init__(
        self, redis_client, ttl_s: int, *, domain: str, uri: str, chain_ids: dict, service_name: str, clock=time.time
    ):
        self._redis = redis_client
        self._ttl = int(ttl_s)
        self._domain = domain
        self._uri = uri
        self._chain_ids = dict(chain_ids)
        self._service = service_name
        self._clock = clock

    @property
    def ttl_s(self) -> int:
        return self._ttl

    def issue(self, chain, address, *, purpose: str = "sign_in", user_id: str | None = None) -> Challenge:
        """A new challenge for address on chain; WalletRefused (bad input) for a bad address."""
        if purpose not in PURPOSES:
            raise WalletRefused("purpose_invalid", "purpose must be sign_in or link", bad_input=True)
        if purpose == "link" and not user_id:
            raise ValueError("a link challenge belongs to an account")
        canonical = normalize_address(chain, address)
        now = self._clock()
        nonce = secrets.token_hex(_NONCE_BYTES)
        statement = (
            f"Sign in to {self._service}."
            if purpose == "sign_in"
            else f"Link this wallet to your {self._service} account."
        )
        message = SignInMessage(
            domain=self._domain,
            address=canonical,
            statement=statement,
            uri=self._uri,
            chain=chain,
            chain_id=self._chain_ids[chain],
            nonce=nonce,
            issued_at=_utc(now),
            expires_at=_utc(now + self._ttl),
        ).text()
        challenge = Challenge(nonce, chain, canonical, message, purpose, user_id, int(now) + self._ttl)
        record = json.dumps(dataclasses.asdict(challenge), separators=(",", ":"))
        try:
            self._redis.set(_PREFIX + nonce, record, ex=self._ttl + _GRACE_S, nx=True)
        except redis.RedisError as err:
            raise ChallengeStoreUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        return challenge

    def take(self, nonce) -> Challenge:
        """Removes and returns the challenge; WalletRefused if unknown, used or expired."""
        if not isinstance(nonce, str) or not _NONCE.match(nonce):
            raise WalletRefused("challenge_unknown", "unknown or already used challenge nonce")
        try:
            raw = self._redis.getdel(_PREFIX + nonce)
        except redis.RedisError as err:
            raise ChallengeStoreUnavailable(f"Redis unavailable ({err.__class__.__name__})") from None
        if raw is None:
            raise WalletRefused("challenge_unknown", "unknown or already used challenge nonce")
        try:
            challenge = Challenge(**json.loads(raw))
        except (ValueError, TypeError):  # a record this version cannot read: no challenge of ours
            raise WalletRefused("challenge_unknown", "unknown or already used challenge nonce") from None
        if self._clock() > challenge.expires_at:
            raise WalletRefused("challenge_expired", "the challenge expired; ask for a new one")
        return challenge


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)


def _iso(epoch: float) -> str:
    return _utc(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")
