"""Wallet addresses: checked on the way in, stored in one canonical form.

- Ethereum: 0x + 40 hex digits. A mixed-case address carries an EIP-55
  checksum and must match it (a typo in it is caught); all-lower and
  all-upper carry none and are accepted. Canonical form: the EIP-55
  checksummed one, so two spellings of one account are one binding.
- TRON: base58check of 0x41 + the 20-byte account (``T...``, 34 characters).
"""

from __future__ import annotations

import re

import base58

from .errors import WalletRefused
from .signatures import keccak256

CHAINS = ("ethereum", "tron")
_ETH = re.compile(r"^0x[0-9a-fA-F]{40}$")
_TRON_PREFIX = 0x41
_TRON_SHAPE = re.compile(r"^T[1-9A-HJ-NP-Za-km-z]{33}$")


def checksum_address(account: bytes) -> str:
    """EIP-55: each hex letter is upper-case where the keccak of the lower-case hex has a nibble >= 8."""
    hex_lower = account.hex()
    digest = keccak256(hex_lower.encode()).hex()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(hex_lower, digest))


def tron_address(account: bytes) -> str:
    return base58.b58encode_check(bytes([_TRON_PREFIX]) + account).decode()


def format_address(chain: str, account: bytes) -> str:
    """The canonical address of a 20-byte account on chain."""
    return checksum_address(account) if chain == "ethereum" else tron_address(account)


def parse_address(chain, address) -> bytes:
    """The 20-byte account an address names; WalletRefused (bad input) otherwise."""
    if chain not in CHAINS:
        raise WalletRefused("chain_unsupported", "chain must be one of " + ", ".join(CHAINS), bad_input=True)
    if not isinstance(address, str):
        raise WalletRefused("address_invalid", "address must be a string", bad_input=True)
    if chain == "ethereum":
        return _parse_ethereum(address)
    return _parse_tron(address)


def normalize_address(chain, address) -> str:
    return format_address(chain, parse_address(chain, address))


def _parse_ethereum(address: str) -> bytes:
    if not _ETH.match(address):
        hint = " (a TRON address? use chain tron)" if _TRON_SHAPE.match(address) else ""
        raise WalletRefused("address_invalid", "an Ethereum address is 0x and 40 hex digits" + hint, bad_input=True)
    account = bytes.fromhex(address[2:])
    digits = address[2:]
    if digits != digits.lower() and digits != digits.upper() and address != checksum_address(account):
        raise WalletRefused(
            "address_checksum_invalid",
            "the address's upper/lower case does not match its EIP-55 checksum: check it for a typo",
            bad_input=True,
        )
    return account


def _parse_tron(address: str) -> bytes:
    if not _TRON_SHAPE.match(address):
        hint = " (an Ethereum address? use chain ethereum)" if _ETH.match(address) else ""
        raise WalletRefused("address_invalid", "a TRON address is T and 33 base58 characters" + hint, bad_input=True)
    try:
        payload = base58.b58decode_check(address)
    except ValueError:
        raise WalletRefused(
            "address_checksum_invalid",
            "the TRON address's base58check checksum is wrong: check it for a typo",
            bad_input=True,
        ) from None
    if len(payload) != 21 or payload[0] != _TRON_PREFIX:
        raise WalletRefused("address_invalid", "not a TRON account address (0x41 prefix)", bad_input=True)
    return payload[1:]
