"""The one error of the wallet modules; the HTTP layer maps it to 400 or 401."""

from __future__ import annotations


class WalletRefused(Exception):
    """An address, challenge or signature is not acceptable.

    reason is a short stable code (e.g. ``signature_malleable``) the client can
    branch on; str(err) is a sentence safe to show. bad_input marks a request
    that was malformed (400) rather than a refused credential (401).
    """

    def __init__(self, reason: str, detail: str, *, bad_input: bool = False):
        super().__init__(detail)
        self.reason = reason
        self.bad_input = bad_input


class ChallengeStoreUnavailable(Exception):
    """Redis did not answer: the challenge could not be stored or taken (503)."""
