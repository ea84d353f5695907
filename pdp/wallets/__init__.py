"""Hardware-wallet sign-in: Ethereum (EIP-191 personal_sign of an EIP-4361
message) and TRON (signMessageV2), verified offline.

- ``errors``      WalletRefused: a refused address or signature, with a stable reason.
- ``addresses``   Ethereum (EIP-55) and TRON (base58check) addresses: checked and normalized.
- ``signatures``  the message hashes of both chains and public-key recovery (coincurve).
- ``messages``    the exact EIP-4361 text a challenge asks the wallet to sign.
- ``challenges``  single-use challenges in Redis, taken atomically (GETDEL).

No chain node is used: contract wallets (EIP-1271, ERC-6492) cannot be
verified offline and are refused with their own reason.
"""
