"""The EIP-4361 ("Sign-In with Ethereum") text a challenge asks a wallet to sign.

The gateway keeps the exact text it handed out and verifies the signature
over those bytes, so it never parses a message a client sends back. TRON
uses the same layout with "TRON account" (the CAIP-122 generalization of
EIP-4361); its Chain ID line holds the TRON network's chain id in decimal
(mainnet 728126428 = 0x2b6653dc, as TRON's JSON-RPC eth_chainId answers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

_ACCOUNT_NAMES = {"ethereum": "Ethereum", "tron": "TRON"}


@dataclasses.dataclass(frozen=True)
class SignInMessage:
    domain: str  # RFC 3986 authority the wallet shows and checks (WALLET_DOMAIN)
    address: str  # canonical: EIP-55 for Ethereum, base58check for TRON
    statement: str  # one line, no newline
    uri: str  # WALLET_URI
    chain: str  # "ethereum" | "tron"
    chain_id: int
    nonce: str
    issued_at: dt.datetime
    expires_at: dt.datetime

    def text(self) -> str:
        if "\n" in self.statement or "\r" in self.statement:
            raise ValueError("an EIP-4361 statement is one line")
        return (
            f"{self.domain} wants you to sign in with your {_ACCOUNT_NAMES[self.chain]} account:\n"
            f"{self.address}\n"
            f"\n"
            f"{self.statement}\n"
            f"\n"
            f"URI: {self.uri}\n"
            f"Version: 1\n"
            f"Chain ID: {self.chain_id}\n"
            f"Nonce: {self.nonce}\n"
            f"Issued At: {rfc3339(self.issued_at)}\n"
            f"Expiration Time: {rfc3339(self.expires_at)}"
        )


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
