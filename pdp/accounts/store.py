"""UserStore: accounts on MongoDB (pymongo), single-document atomic writes only.

A user document (``users`` collection)::

    {"_id": "u_<32 hex>",            # also the token's sub
     "email": "ann@example.com",      # normalized, unique index (absent: no email)
     "status": "pending" | "active",  # active once a first magic link is redeemed
     "roles": ["user"], "plan": "free",
     "profile": {"display_name": str, "locale": str, "timezone": str},
     "totp": {"secret": <sealed>, "confirmed_at": dt, "recovery": [sha256 hex, ...]},
     "totp_pending": {"secret": <sealed>, "expires_at": dt},
     "wallets": [{"address": str, ...}],  # unique index on wallets.address
     "created_at": dt, "updated_at": dt, "last_login_at": dt}

``totp`` and ``wallets`` are absent until first set, so the partial unique index
on ``wallets.address`` skips accounts without a wallet. Session metadata
(one document per refresh-token family) lives in ``sessions``; audit records
in ``audit`` (see audit.py).

Every pymongo failure to reach the server becomes StoreUnavailable; a
duplicate key becomes EmailTaken / WalletTaken. Writes that would create a
user refuse to run until the unique indexes are known to exist.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from typing import Callable

import pymongo
from pymongo.errors import DuplicateKeyError, PyMongoError

from .errors import EmailTaken, StoreUnavailable, WalletTaken

log = logging.getLogger("lucid.pdp.accounts")

# The fields PUT /users/me may change, with their longest accepted length.
PROFILE_FIELDS = {"display_name": 128, "locale": 35, "timezone": 64}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_user_id() -> str:
    return "u_" + secrets.token_hex(16)


def connect_database(uri: str, timeout_ms: int):
    """The database named in MONGODB_URI (default ``lucid_gateway``).

    Nothing is sent until the first operation; timeouts keep a dead server
    from hanging a request (pymongo's default server selection waits 30 s).
    Writes are acknowledged once journaled (j: true): with w: 1 alone, a
    server killed -9 lost the last sign-ups it had already acknowledged
    (bench/faults.py mongodb-kill9; tests/accounts/test_durability.py)."""
    client = pymongo.MongoClient(
        uri,
        tz_aware=True,
        connect=False,
        appname="lucid-gateway-pdp",
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms, 2000),
        retryWrites=True,
        journal=True,
    )
    return client.get_default_database("lucid_gateway")


def _unavailable(err: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"MongoDB unavailable ({err.__class__.__name__})")


class UserStore:
    """Users, wallet bindings and session metadata.

    Args:
        db: a pymongo Database.
        clock: returns an aware UTC datetime (tests pass their own).
    """

    def __init__(self, db, clock: Callable[[], dt.datetime] = utcnow):
        self._db = db
        self.users = db["users"]
        self.sessions = db["sessions"]
        self._clock = clock
        self._indexes_ready = False
        self._lock = threading.Lock()

    # -- setup and health ------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Creates the indexes (idempotent); raises StoreUnavailable."""
        try:
            # Partial, like the wallet index: an account without an email (a
            # wallet-only one) is not a duplicate of every other such account.
            self.users.create_index(
                "email", unique=True, name="email_unique", partialFilterExpression={"email": {"$type": "string"}}
            )
            self.users.create_index(
                "wallets.address",
                unique=True,
                name="wallet_address_unique",
                partialFilterExpression={"wallets.address": {"$type": "string"}},
            )
            self.sessions.create_index([("user_id", 1), ("expires_at", 1)], name="user_sessions")
            self.sessions.create_index("expires_at", name="session_expiry")
            self._db["audit"].create_index([("target", 1), ("at", -1)], name="audit_by_target")
        except PyMongoError as err:
            raise _unavailable(err) from None
        self._indexes_ready = True

    def require_indexes(self) -> None:
        """Makes sure the unique indexes exist before a write that relies on them."""
        if self._indexes_ready:
            return
        with self._lock:
            if not self._indexes_ready:
                self.ensure_indexes()

    def ping(self, timeout_s: float = 1.0) -> bool:
        """Readiness: a short deadline (pymongo.timeout), not the request timeouts."""
        try:
            with pymongo.timeout(timeout_s):
                self._db.command("ping")
            return True
        except PyMongoError:
            return False

    # -- users -----------------------------------------------------------------

    def create_user(
        self, email: str, *, roles=("user",), plan: str = "free", profile: dict | None = None, status: str = "pending"
    ) -> dict:
        """Inserts a user; raises EmailTaken or StoreUnavailable. email must be normalized."""
        self.require_indexes()
        now = self._clock()
        doc = {
            "_id": new_user_id(),
            "email": email,
            "status": status,
            "roles": sorted(set(roles)),
            "plan": plan,
            "profile": dict(profile or {}),
            "created_at": now,
            "updated_at": now,
            "last_login_at": None,
        }
        try:
            self.users.insert_one(doc)
        except DuplicateKeyError:
            raise EmailTaken("an account with this email exists") from None
        except PyMongoError as err:
            raise _unavailable(err) from None
        return doc

    def get(self, user_id: str) -> dict | None:
        return self._find_one({"_id": user_id})

    def find_by_email(self, email: str) -> dict | None:
        return self._find_one({"email": email})

    def find_by_wallet(self, address: str) -> dict | None:
        return self._find_one({"wallets.address": address})

    def update_profile(self, user_id: str, fields: dict) -> dict | None:
        """Sets profile fields (only PROFILE_FIELDS); returns the new document."""
        unknown = set(fields) - set(PROFILE_FIELDS)
        if unknown:
            raise ValueError(f"not profile fields: {sorted(unknown)}")
        changes = {f"profile.{k}": v for k, v in fields.items()}
        changes["updated_at"] = self._clock()
        return self._find_one_and_update({"_id": user_id}, {"$set": changes})

    def mark_signed_in(self, user_id: str, email: str) -> dict | None:
        """A redeemed magic link: confirms the account (pending -> active) and
        records the sign-in, only if the email is still the one the link was for."""
        now = self._clock()
        return self._find_one_and_update(
            {"_id": user_id, "email": email}, {"$set": {"status": "active", "last_login_at": now, "updated_at": now}}
        )

    def compare_and_set(self, user_id: str, expected: dict, changes: dict) -> dict | None:
        """Sets changes only while the fields in expected still hold (an admin
        edit racing another one loses instead of overwriting); None if not."""
        query = {"_id": user_id, **expected}
        return self._find_one_and_update(query, {"$set": {**changes, "updated_at": self._clock()}})

    def count_users(self) -> int:
        try:
            return self.users.estimated_document_count()  # collection metadata, not a scan
        except PyMongoError as err:
            raise _unavailable(err) from None

    # -- TOTP ------------------------------------------------------------------

    def set_totp_pending(self, user_id: str, sealed_secret: str, expires_at: dt.datetime) -> bool:
        """Stores a secret awaiting its first code; refused while TOTP is active."""
        result = self._update_one(
            {"_id": user_id, "totp": {"$exists": False}},
            {
                "$set": {
                    "totp_pending": {"secret": sealed_secret, "expires_at": expires_at},
                    "updated_at": self._clock(),
                }
            },
        )
        return result.modified_count == 1

    def activate_totp(self, user_id: str, sealed_secret: str, recovery_hashes: list[str]) -> bool:
        """Moves the pending secret to active, only if it is still the pending one
        and unexpired (a second confirm, or a newer enrolment, loses)."""
        now = self._clock()
        result = self._update_one(
            {
                "_id": user_id,
                "totp": {"$exists": False},
                "totp_pending.secret": sealed_secret,
                "totp_pending.expires_at": {"$gt": now},
            },
            {
                "$set": {
                    "totp": {"secret": sealed_secret, "confirmed_at": now, "recovery": recovery_hashes},
                    "updated_at": now,
                },
                "$unset": {"totp_pending": ""},
            },
        )
        return result.modified_count == 1

    def reseal_totp(self, user_id: str, old_sealed: str, new_sealed: str) -> bool:
        """Re-encrypts the active secret under the current key (key rotation)."""
        result = self._update_one({"_id": user_id, "totp.secret": old_sealed}, {"$set": {"totp.secret": new_sealed}})
        return result.modified_count == 1

    def remove_totp(self, user_id: str, sealed_secret: str) -> bool:
        """Removes the factor, only if it is still the one the caller proved."""
        result = self._update_one(
            {"_id": user_id, "totp.secret": sealed_secret},
            {"$unset": {"totp": "", "totp_pending": ""}, "$set": {"updated_at": self._clock()}},
        )
        return result.modified_count == 1

    def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        """Removes one recovery code; True only for the one caller that removed it."""
        result = self._update_one({"_id": user_id, "totp.recovery": code_hash}, {"$pull": {"totp.recovery": code_hash}})
        return result.modified_count == 1

    # -- wallet bindings (for the hardware-wallet sign-in) -------------------------

    def create_wallet_user(self, user_id: str, binding: dict, *, roles=("user",), plan: str = "free") -> dict:
        """Inserts an account whose one credential is a wallet (wallet sign-up
        while SIGNUP_MODE=open): no email, active (the signature proved the
        wallet), and the binding in the same insert, so the unique index on
        wallets.address decides a race. Raises WalletTaken or StoreUnavailable."""
        self.require_indexes()
        now = self._clock()
        doc = {
            "_id": user_id,
            "status": "active",
            "roles": sorted(set(roles)),
            "plan": plan,
            "profile": {},
            "wallets": [{**binding, "added_at": now}],
            "created_at": now,
            "updated_at": now,
            "last_login_at": now,
        }
        try:
            self.users.insert_one(doc)
        except DuplicateKeyError:
            raise WalletTaken("this wallet is bound to an account") from None
        except PyMongoError as err:
            raise _unavailable(err) from None
        return doc

    def add_wallet(self, user_id: str, binding: dict) -> bool:
        """Binds a wallet (binding["address"] normalized by the caller) to a user.

        Returns False when there is no such user; raises WalletTaken when any
        account (this one included) already holds the address."""
        self.require_indexes()
        address = binding["address"]
        entry = {**binding, "added_at": self._clock()}
        try:
            result = self.users.update_one(
                {"_id": user_id, "wallets.address": {"$ne": address}},
                {"$push": {"wallets": entry}, "$set": {"updated_at": self._clock()}},
            )
        except DuplicateKeyError:
            raise WalletTaken("this wallet is bound to an account") from None
        except PyMongoError as err:
            raise _unavailable(err) from None
        if result.matched_count == 0 and self.get(user_id) is not None:
            raise WalletTaken("this wallet is bound to an account")
        return result.modified_count == 1

    def remove_wallet(self, user_id: str, address: str) -> bool:
        result = self._update_one(
            {"_id": user_id, "wallets.address": address},
            {"$pull": {"wallets": {"address": address}}, "$set": {"updated_at": self._clock()}},
        )
        return result.modified_count == 1

    # -- session metadata (one per refresh-token family) ------------------------------

    def record_session(
        self,
        family_id: str,
        user_id: str,
        *,
        amr: list[str],
        mfa: bool,
        expires_at: dt.datetime,
        client_ip: str = "",
        user_agent: str = "",
    ) -> None:
        now = self._clock()
        try:
            self.sessions.insert_one(
                {
                    "_id": family_id,
                    "user_id": user_id,
                    "amr": amr,
                    "mfa": mfa,
                    "created_at": now,
                    "last_used_at": now,
                    "expires_at": expires_at,
                    "revoked_at": None,
                    "client_ip": client_ip[:64],
                    "user_agent": user_agent[:256],
                }
            )
        except PyMongoError as err:
            raise _unavailable(err) from None

    def touch_session(self, family_id: str, expires_at: dt.datetime) -> None:
        self._update_one(
            {"_id": family_id, "revoked_at": None},
            {"$set": {"last_used_at": self._clock(), "expires_at": expires_at}},
            self.sessions,
        )

    def end_session(self, family_id: str, reason: str) -> None:
        self._update_one(
            {"_id": family_id, "revoked_at": None},
            {"$set": {"revoked_at": self._clock(), "revoked_reason": reason}},
            self.sessions,
        )

    def live_session_ids(self, user_id: str) -> list[str]:
        """The user's sessions (refresh families) neither ended nor expired."""
        try:
            found = self.sessions.find(
                {"user_id": user_id, "revoked_at": None, "expires_at": {"$gt": self._clock()}}, {"_id": 1}
            )
            return [doc["_id"] for doc in found]
        except PyMongoError as err:
            raise _unavailable(err) from None

    def count_active_sessions(self) -> int:
        """Sessions neither revoked nor past expires_at (no TTL index is trusted)."""
        try:
            return self.sessions.count_documents({"revoked_at": None, "expires_at": {"$gt": self._clock()}})
        except PyMongoError as err:
            raise _unavailable(err) from None

    # -- helpers ---------------------------------------------------------------

    def _find_one(self, query: dict) -> dict | None:
        try:
            return self.users.find_one(query)
        except PyMongoError as err:
            raise _unavailable(err) from None

    def _find_one_and_update(self, query: dict, update: dict) -> dict | None:
        try:
            return self.users.find_one_and_update(query, update, return_document=pymongo.ReturnDocument.AFTER)
        except PyMongoError as err:
            raise _unavailable(err) from None

    def _update_one(self, query: dict, update: dict, collection=None):
        collection = self.users if collection is None else collection
        try:
            return collection.update_one(query, update)
        except PyMongoError as err:
            raise _unavailable(err) from None
