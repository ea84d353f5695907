"""Signature recovery and addresses against independent signers (eth-account,
tronpy) and published vectors (Trust Wallet Core, blockchain_utils)."""

import datetime as dt

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from tronpy.keys import PrivateKey as TronKey

from pdp.wallets.addresses import checksum_address, normalize_address, parse_address
from pdp.wallets.challenges import Challenge
from pdp.wallets.errors import WalletRefused
from pdp.wallets.messages import SignInMessage
from pdp.wallets.signatures import SECP256K1_N, message_hash, recover_signer
from pdp.wallets.verification import verify_challenge_signature

MESSAGE = "example.com wants you to sign in with your Ethereum account:\nhéllo ✓"


def eth_sign(key, text: str) -> bytes:
    return bytes(Account.sign_message(encode_defunct(text=text), key).signature)


def with_v(sig: bytes, v: int) -> str:
    return "0x" + (sig[:64] + bytes([v])).hex()


def flip_s(sig: bytes) -> bytes:
    """The same signature with s -> n - s and the recovery id flipped: valid ECDSA, high s."""
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([1 - v])


def refusal(fn, *args) -> WalletRefused:
    with pytest.raises(WalletRefused) as info:
        fn(*args)
    return info.value


# -- Ethereum -------------------------------------------------------------------------


def test_ethereum_signer_is_recovered_with_every_v_form():
    acct = Account.create()
    sig = eth_sign(acct.key, MESSAGE)
    assert sig[64] in (27, 28)
    for v in (sig[64], sig[64] - 27):
        account = recover_signer("ethereum", MESSAGE.encode(), with_v(sig, v))
        assert checksum_address(account) == acct.address
    # no 0x prefix is accepted as well
    assert checksum_address(recover_signer("ethereum", MESSAGE.encode(), sig.hex())) == acct.address


def test_eip191_hash_matches_eth_account():
    from eth_account.messages import _hash_eip191_message

    assert message_hash("ethereum", MESSAGE.encode()) == _hash_eip191_message(encode_defunct(text=MESSAGE))


def test_other_text_recovers_another_account():
    acct = Account.create()
    sig = eth_sign(acct.key, MESSAGE)
    other = recover_signer("ethereum", (MESSAGE + " ").encode(), "0x" + sig.hex())
    assert checksum_address(other) != acct.address


def test_high_s_is_refused_though_it_is_valid_ecdsa():
    acct = Account.create()
    sig = eth_sign(acct.key, MESSAGE)
    malleable = flip_s(sig)
    # The flipped signature really is the same key's (libsecp256k1 recovers it) ...
    from coincurve import PublicKey

    from pdp.wallets.signatures import signer_account

    pub = PublicKey.from_signature_and_message(malleable, message_hash("ethereum", MESSAGE.encode()), hasher=None)
    assert checksum_address(signer_account(pub.format(compressed=False)[1:])) == acct.address
    # ... and EIP-2 refuses it.
    assert refusal(recover_signer, "ethereum", MESSAGE.encode(), "0x" + malleable.hex()).reason == "signature_malleable"


@pytest.mark.parametrize(
    "signature, reason",
    [
        ("0x" + "ab" * 64, "signature_malformed"),  # truncated: 64 bytes
        ("0x" + "ab" * 10, "signature_malformed"),
        ("0x", "signature_malformed"),
        ("", "signature_malformed"),
        ("0xzz" + "ab" * 64, "signature_malformed"),  # not hex
        ("0x" + "a" * 129, "signature_malformed"),  # odd length
        ("not a signature at all", "signature_malformed"),
        (12345, "signature_malformed"),
        (None, "signature_malformed"),
        ("0x" + "ab" * 130, "contract_wallet_unsupported"),  # two owners' signatures (a Safe's EIP-1271)
        ("0x" + "ab" * 100 + "6492" * 16, "contract_wallet_unsupported"),  # ERC-6492 wrapper
        ("0x" + "00" * 64 + "1b", "signature_malformed"),  # r = s = 0
        ("0x" + "ff" * 32 + "01" * 32 + "1b", "signature_malformed"),  # r >= n
    ],
)
def test_bad_signatures_are_refused_with_a_reason(signature, reason):
    assert refusal(recover_signer, "ethereum", b"x", signature).reason == reason


@pytest.mark.parametrize("v", [2, 26, 29, 37, 38, 255])
def test_v_other_than_0_1_27_28_is_refused(v):
    sig = eth_sign(Account.create().key, MESSAGE)
    assert refusal(recover_signer, "ethereum", MESSAGE.encode(), with_v(sig, v)).reason == "signature_malformed"


# EIP-55's own test vectors.
EIP55 = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55)
def test_eip55_checksums_match_the_spec(address):
    assert normalize_address("ethereum", address) == address
    assert normalize_address("ethereum", address.lower()) == address
    assert normalize_address("ethereum", "0x" + address[2:].upper()) == address


@pytest.mark.parametrize("address", EIP55)
def test_a_mangled_checksum_is_refused(address):
    i = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    mangled = address[:i] + address[i].swapcase() + address[i + 1 :]
    err = refusal(parse_address, "ethereum", mangled)
    assert err.reason == "address_checksum_invalid" and err.bad_input


@pytest.mark.parametrize(
    "chain, address, reason",
    [
        ("ethereum", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA", "address_invalid"),
        ("ethereum", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "address_invalid"),
        ("ethereum", "TWWb9EjUWai17YEVB7FR8hreupYJKG9sMR", "address_invalid"),
        ("tron", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "address_invalid"),
        ("tron", "TWWb9EjUWai17YEVB7FR8hreupYJKG9sMr", "address_checksum_invalid"),
        ("tron", "T0Wb9EjUWai17YEVB7FR8hreupYJKG9sMR", "address_invalid"),  # 0 is not base58
        ("tron", "1111111111111111111114oLvT2", "address_invalid"),
        ("bitcoin", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "chain_unsupported"),
        ("ethereum", None, "address_invalid"),
    ],
)
def test_bad_addresses_are_bad_input(chain, address, reason):
    err = refusal(parse_address, chain, address)
    assert err.reason == reason and err.bad_input


# -- TRON ---------------------------------------------------------------------------------

# Published signMessageV2 vectors: Trust Wallet Core's TronMessageSigner test
# ("Hello World") and blockchain_utils' TronSigner test ("message").
TRON_VECTORS = [
    (
        "75065f100e38d3f3b4c5c4235834ba8216de62272a4f03532c44b31a5734360a",
        b"Hello World",
        "bc0753c070cc55693097df11bc11e1a7c4bd5e1a40b9dc94c75568e59bcc9d6b50a7873ef25b469e494490a54de37327b4bc7fc825c81a377b555e34fb7261ba1c",
        "TWWb9EjUWai17YEVB7FR8hreupYJKG9sMR",
    ),
    (
        "43985273a3d94eb753fe6acfd7003e88254effce1eb53e2e97b8522558a98038",
        b"message",
        "fde00bc33d78109bc61de314c1c0526a047e22a2aaae473ca84b32d8aa35ed3e03720e05d614087e3d8c6fae63879755b32aa08818a2d4de66fee1a617a971671b",
        "TCFvmqhxFrEdPbnQzKWaGNdXz7X3za7w5r",
    ),
]


@pytest.mark.parametrize("key, message, signature, address", TRON_VECTORS)
def test_tron_published_vectors(key, message, signature, address):
    assert normalize_address("tron", address) == address
    assert TronKey(bytes.fromhex(key)).public_key.to_base58check_address() == address
    assert normalize_address("tron", _tron(recover_signer("tron", message, signature))) == address
    assert normalize_address("tron", _tron(recover_signer("tron", message, "0x" + signature))) == address


def test_tronpy_signatures_recover_with_v_0_1_and_27_28():
    key = TronKey.random()
    sig = key.sign_msg(MESSAGE.encode()).to_bytes()
    assert sig[64] in (0, 1)  # tronpy gives the raw recovery id; TronWeb adds 27
    for v in (sig[64], sig[64] + 27):
        assert (
            _tron(recover_signer("tron", MESSAGE.encode(), with_v(sig, v))) == key.public_key.to_base58check_address()
        )


def test_the_ethereum_prefix_does_not_verify_as_tron():
    """The same key signs for both chains; the prefix keeps one chain's signature off the other."""
    acct = Account.create()
    sig = eth_sign(acct.key, MESSAGE)
    tron_key = TronKey(bytes(acct.key))
    assert (
        _tron(recover_signer("tron", MESSAGE.encode(), "0x" + sig.hex()))
        != tron_key.public_key.to_base58check_address()
    )


def _tron(account: bytes) -> str:
    from pdp.wallets.addresses import tron_address

    return tron_address(account)


# -- the EIP-4361 text and its verification -------------------------------------------------------


def _message(chain="ethereum", address=EIP55[0]):
    t = dt.datetime(2026, 12, 1, 20, 0, 0, tzinfo=dt.timezone.utc)
    return SignInMessage(
        domain="login.example.com",
        address=address,
        statement="Sign in to lucid.",
        uri="https://login.example.com",
        chain=chain,
        chain_id=1,
        nonce="a" * 32,
        issued_at=t,
        expires_at=t + dt.timedelta(minutes=5),
    )


def test_eip4361_text_layout():
    assert _message().text() == (
        "login.example.com wants you to sign in with your Ethereum account:\n"
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n\n"
        "Sign in to lucid.\n\n"
        "URI: https://login.example.com\n"
        "Version: 1\n"
        "Chain ID: 1\n"
        "Nonce: " + "a" * 32 + "\n"
        "Issued At: 2026-12-01T20:00:00Z\n"
        "Expiration Time: 2026-12-01T20:05:00Z"
    )
    assert (
        _message("tron", "TWWb9EjUWai17YEVB7FR8hreupYJKG9sMR")
        .text()
        .startswith(
            "login.example.com wants you to sign in with your TRON account:\nTWWb9EjUWai17YEVB7FR8hreupYJKG9sMR\n"
        )
    )


def test_a_multi_line_statement_is_refused():
    with pytest.raises(ValueError):
        SignInMessage(**{**_message().__dict__, "statement": "two\nlines"}).text()


def test_verify_challenge_signature_both_chains():
    acct = Account.create()
    text = _message(address=acct.address).text()
    challenge = Challenge("a" * 32, "ethereum", acct.address, text, "sign_in", None, 0)
    assert verify_challenge_signature(challenge, "0x" + eth_sign(acct.key, text).hex()) == acct.address
    other = Account.create()
    err = refusal(verify_challenge_signature, challenge, "0x" + eth_sign(other.key, text).hex())
    assert err.reason == "signature_mismatch" and not err.bad_input

    key = TronKey.random()
    address = key.public_key.to_base58check_address()
    text = _message("tron", address).text()
    challenge = Challenge("a" * 32, "tron", address, text, "sign_in", None, 0)
    assert verify_challenge_signature(challenge, key.sign_msg(text.encode()).hex()) == address
    # An Ethereum-prefixed signature by the same key over the same text: the wrong chain.
    wrong_chain = eth_sign(key.hex(), text)
    assert refusal(verify_challenge_signature, challenge, "0x" + wrong_chain.hex()).reason == "signature_mismatch"


def test_the_docs_signing_script_makes_what_eth_account_and_tronpy_make():
    """scripts/wallet_sign.py is how docs/wallets.md signs: its bytes must be a wallet's."""
    import importlib.util

    from tests.support.processes import ROOT

    spec = importlib.util.spec_from_file_location("wallet_sign", ROOT / "scripts" / "wallet_sign.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from coincurve import PrivateKey

    raw = bytes.fromhex("75065f100e38d3f3b4c5c4235834ba8216de62272a4f03532c44b31a5734360a")
    key = PrivateKey(raw)
    assert script.address(key, "ethereum") == Account.from_key(raw).address
    assert script.address(key, "tron") == "TWWb9EjUWai17YEVB7FR8hreupYJKG9sMR"
    assert script.sign(key, "ethereum", MESSAGE) == "0x" + eth_sign(raw, MESSAGE).hex()
    # RFC 6979 signatures are deterministic: the published TRON vector, byte for byte.
    assert script.sign(key, "tron", "Hello World")[2:] == TRON_VECTORS[0][2]
