"""Signed-message hashes of Ethereum and TRON, and recovery of the signer.

Both chains sign keccak256(prefix + decimal byte length + message) with
secp256k1 and send r || s || v (65 bytes). Ethereum's prefix is EIP-191's
"\\x19Ethereum Signed Message:\\n"; TRON's signMessageV2 uses
"\\x19TRON Signed Message:\\n". The signer's address comes from the recovered
public key, so nothing but the message and the signature is needed.
"""

from __future__ import annotations

import re

from coincurve import PublicKey
from Crypto.Hash import keccak

from .errors import WalletRefused

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_PREFIXES = {
    "ethereum": b"\x19Ethereum Signed Message:\n",
    "tron": b"\x19TRON Signed Message:\n",
}
_HEX = re.compile(r"^(0x)?([0-9a-fA-F]*)$")
# ERC-6492 wraps a not-yet-deployed contract wallet's signature and ends with this.
_ERC6492_SUFFIX = bytes.fromhex("6492" * 16)
_MAX_SIGNATURE_CHARS = 4096


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def message_hash(chain: str, message: bytes) -> bytes:
    """The 32 bytes a wallet signs for message on chain ("ethereum" or "tron")."""
    return keccak256(_PREFIXES[chain] + str(len(message)).encode() + message)


def parse_signature(text) -> tuple[int, int, int]:
    """(r, s, recovery id) of a 0x-hex 65-byte signature; WalletRefused otherwise.

    v may be 0/1 (what libsecp256k1, tronpy and Ledger's raw API give) or 27/28
    (what MetaMask, ethers and TronWeb give). s must be in the lower half of
    the curve order (EIP-2): (r, n - s) signs the same message, and accepting
    both would let anyone make a second valid signature from a first one.
    """
    if not isinstance(text, str) or len(text) > _MAX_SIGNATURE_CHARS:
        raise WalletRefused("signature_malformed", "the signature must be a hex string of 65 bytes")
    match = _HEX.match(text.strip())
    if not match or len(match.group(2)) % 2:
        raise WalletRefused("signature_malformed", "the signature must be a hex string of 65 bytes")
    raw = bytes.fromhex(match.group(2))
    if len(raw) > 65:
        # An EOA signature is exactly 65 bytes; EIP-1271 ones are whatever the
        # contract accepts (a Safe's are 65 bytes per owner), ERC-6492 ones end in its magic.
        kind = "ERC-6492" if raw.endswith(_ERC6492_SUFFIX) else "EIP-1271"
        raise WalletRefused(
            "contract_wallet_unsupported",
            f"a signature longer than 65 bytes is a contract wallet's ({kind}), which only a chain node "
            "can check; this gateway verifies offline: sign with the wallet's own key (an externally owned account)",
        )
    if len(raw) != 65:
        raise WalletRefused("signature_malformed", f"the signature must be 65 bytes, got {len(raw)}")
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v in (27, 28):
        v -= 27
    if v not in (0, 1):
        raise WalletRefused("signature_malformed", f"the signature's v must be 0, 1, 27 or 28, got {raw[64]}")
    if not (1 <= r < SECP256K1_N and 1 <= s < SECP256K1_N):
        raise WalletRefused("signature_malformed", "the signature's r or s is out of range")
    if s > _HALF_N:
        raise WalletRefused(
            "signature_malleable", "the signature has a high s value (refused by EIP-2); use its canonical low-s form"
        )
    return r, s, v


def recover_public_key(digest: bytes, r: int, s: int, recovery_id: int) -> bytes:
    """The 64-byte uncompressed public key (without the 0x04) that signed digest."""
    compact = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recovery_id])
    try:
        key = PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except Exception:  # noqa: BLE001 - coincurve raises bare Exception/ValueError for bad points
        raise WalletRefused("signature_invalid", "no public key matches this signature") from None
    return key.format(compressed=False)[1:]


def signer_account(public_key: bytes) -> bytes:
    """The 20-byte account of a public key: the last 20 bytes of its keccak256
    (the same for Ethereum and TRON; TRON prefixes 0x41 when it encodes it)."""
    return keccak256(public_key)[-20:]


def recover_signer(chain: str, message: bytes, signature) -> bytes:
    """The 20-byte account that signed message on chain; WalletRefused if none."""
    r, s, v = parse_signature(signature)
    return signer_account(recover_public_key(message_hash(chain, message), r, s, v))
