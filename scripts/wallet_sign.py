#!/usr/bin/env python3
"""Sign in to lucid-gateway with a wallet key kept in a local file.

It signs the same bytes a hardware wallet signs: MetaMask/Ledger's
personal_sign (EIP-191) for Ethereum, TronLink's signMessageV2 for TRON:

    keccak256(prefix + str(len(message)) + message), secp256k1, r || s || v (v = 27/28)
    prefix = "\\x19Ethereum Signed Message:\\n" or "\\x19TRON Signed Message:\\n"

Usage (the project's venv has coincurve, pycryptodome and base58):

    .venv/bin/python scripts/wallet_sign.py address  --chain ethereum
    .venv/bin/python scripts/wallet_sign.py link     --chain ethereum --token "$ACCESS"
    .venv/bin/python scripts/wallet_sign.py sign-in  --chain ethereum
    .venv/bin/python scripts/wallet_sign.py sign     --chain tron < message.txt

The key is created on first use in run/wallet.key (mode 0600; --key to choose
another). It is a development key: never put a real wallet's key in a file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import urllib.error
import urllib.request

import base58
from coincurve import PrivateKey
from Crypto.Hash import keccak

PREFIXES = {"ethereum": b"\x19Ethereum Signed Message:\n", "tron": b"\x19TRON Signed Message:\n"}


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def load_key(path: str) -> PrivateKey:
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        print(f"wallet_sign: new key in {path}", file=sys.stderr)
    with open(path) as f:
        return PrivateKey(bytes.fromhex(f.read().strip()))


def address(key: PrivateKey, chain: str) -> str:
    account = keccak256(key.public_key.format(compressed=False)[1:])[-20:]
    if chain == "tron":
        return base58.b58encode_check(b"\x41" + account).decode()
    digest = keccak256(account.hex().encode()).hex()  # EIP-55 checksum
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(account.hex(), digest))


def sign(key: PrivateKey, chain: str, message: str) -> str:
    data = message.encode("utf-8")
    digest = keccak256(PREFIXES[chain] + str(len(data)).encode() + data)
    sig = key.sign_recoverable(digest, hasher=None)  # r || s || recovery id, s already low (EIP-2)
    return "0x" + (sig[:64] + bytes([sig[64] + 27])).hex()


def call(base: str, path: str, body: dict, token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        base.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        print(f"{path}: HTTP {err.code}\n{err.read().decode(errors='replace')}", file=sys.stderr)
        raise SystemExit(1) from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["address", "sign", "sign-in", "link"])
    p.add_argument("--chain", choices=sorted(PREFIXES), default="ethereum")
    p.add_argument("--key", default="run/wallet.key", help="hex private key file (created if missing)")
    p.add_argument("--gateway", default=os.environ.get("GATEWAY", "http://127.0.0.1:8080"))
    p.add_argument("--token", help="access token of the account to link the wallet to (link)")
    p.add_argument("--second-factor", action="store_true", help="link the wallet as a hardware second factor")
    args = p.parse_args()
    key = load_key(args.key)
    mine = address(key, args.chain)
    if args.command == "address":
        print(mine)
        return
    if args.command == "sign":
        print(sign(key, args.chain, sys.stdin.read()))
        return
    purpose = "link" if args.command == "link" else "sign_in"
    if purpose == "link" and not args.token:
        p.error("link needs --token (an access token of the account)")
    challenge = call(
        args.gateway,
        "/api/v1/auth/wallet/challenge",
        {"chain": args.chain, "address": mine, "purpose": purpose},
        args.token,
    )
    print("--- the wallet shows and signs ---\n" + challenge["message"] + "\n---", file=sys.stderr)
    answer = {"nonce": challenge["nonce"], "signature": sign(key, args.chain, challenge["message"])}
    if purpose == "link":
        answer["second_factor"] = args.second_factor
        print(json.dumps(call(args.gateway, "/api/v1/users/me/wallets", answer, args.token), indent=2))
    else:
        print(json.dumps(call(args.gateway, "/api/v1/auth/wallet/verify", answer), indent=2))


if __name__ == "__main__":
    main()
