"""Does a signature over a challenge come from the challenge's address?"""

from __future__ import annotations

from .addresses import parse_address
from .errors import WalletRefused
from .signatures import recover_signer


def verify_challenge_signature(challenge, signature) -> str:
    """The challenge's (canonical) address if signature is its wallet's
    signature of the challenge text on the challenge's chain; WalletRefused otherwise.

    The recovered account is compared as 20 bytes, which is the
    case-insensitive comparison of the hex addresses (their EIP-55 case was
    checked when the challenge was made)."""
    signer = recover_signer(challenge.chain, challenge.message.encode("utf-8"), signature)
    if signer != parse_address(challenge.chain, challenge.address):
        raise WalletRefused(
            "signature_mismatch",
            f"the signature is not by {challenge.address} over this challenge's text on {challenge.chain} "
            "(signed another text, another chain's prefix, or with another key)",
        )
    return challenge.address
