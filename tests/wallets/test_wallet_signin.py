"""Wallet sign-in and linking through the real PDP (gunicorn), Redis and SecantusDB.

Signatures are made by independent libraries: eth-account (what MetaMask's
personal_sign gives, v 27/28) and tronpy (TronWeb's signMessageV2 bytes;
v 0/1, and 27/28 as TronWeb sends it).
"""

import time

import jwt
import pytest
import requests
from eth_account import Account
from eth_account.messages import encode_defunct
from tronpy.keys import PrivateKey as TronKey

from pdp.wallets.signatures import SECP256K1_N
from tests.accounts.stack import away_from_step_edge, code_at, token_for
from tests.support.pdp_process import start_pdp


class EthWallet:
    chain = "ethereum"

    def __init__(self):
        self._acct = Account.create()
        self.address = self._acct.address

    def sign(self, text: str) -> str:
        return "0x" + bytes(Account.sign_message(encode_defunct(text=text), self._acct.key).signature).hex()


class TronWallet:
    chain = "tron"

    def __init__(self):
        self._key = TronKey.random()
        self.address = self._key.public_key.to_base58check_address()

    def sign(self, text: str) -> str:
        raw = self._key.sign_msg(text.encode()).to_bytes()
        return "0x" + (raw[:64] + bytes([raw[64] + 27])).hex()  # TronWeb's v

    def sign_as_ethereum(self, text: str) -> str:
        return "0x" + bytes(Account.sign_message(encode_defunct(text=text), self._key.hex()).signature).hex()


def problem(response, status, reason=None):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    if reason:
        assert body["reason"] == reason, body
    return body


def account(stack, email):
    stack.sign_up(email)
    return stack.sign_in(email)


def challenge(stack, wallet, purpose="sign_in", token=None, address=None):
    body = {"chain": wallet.chain, "address": address or wallet.address}
    if purpose != "sign_in":
        body["purpose"] = purpose
    response = stack.post("/auth/wallet/challenge", body, token=token)
    assert response.status_code == 200, response.text
    return response.json()


def link(stack, wallet, token, second_factor=None):
    c = challenge(stack, wallet, "link", token)
    body = {"nonce": c["nonce"], "signature": wallet.sign(c["message"])}
    if second_factor is not None:
        body["second_factor"] = second_factor
    return stack.post("/users/me/wallets", body, token=token)


def verify(stack, wallet, sign=None, **kw):
    c = challenge(stack, wallet)
    return stack.post(
        "/auth/wallet/verify", {"nonce": c["nonce"], "signature": (sign or wallet.sign)(c["message"])}, **kw
    )


@pytest.mark.parametrize("wallet_type", [EthWallet, TronWallet])
def test_a_linked_wallet_signs_in_to_its_account(stack, wallet_type):
    wallet = wallet_type()
    email = f"{wallet.chain}-signin@example.com"
    tokens = account(stack, email)
    linked = link(stack, wallet, tokens["access_token"])
    assert linked.status_code == 201, linked.text
    assert linked.json() == {"address": wallet.address, "chain": wallet.chain, "second_factor": False}

    c = challenge(stack, wallet)
    assert c["message"].startswith(
        f"login.gateway.example wants you to sign in with your "
        f"{'Ethereum' if wallet.chain == 'ethereum' else 'TRON'} account:\n{wallet.address}\n"
    )
    assert f"\nChain ID: {11155111 if wallet.chain == 'ethereum' else 728126428}\n" in c["message"]
    before = int(time.time())
    signed_in = stack.post("/auth/wallet/verify", {"nonce": c["nonce"], "signature": wallet.sign(c["message"])})
    assert signed_in.status_code == 200, signed_in.text
    pair = signed_in.json()
    assert pair["user_id"] == tokens["user_id"] and pair["amr"] == ["hwk"] and pair["mfa"] is False
    assert pair["token_type"] == "Bearer" and pair["refresh_token"] and set(pair) == set(tokens)
    auth_time = jwt.decode(pair["access_token"], options={"verify_signature": False})["auth_time"]
    assert before <= auth_time <= time.time()

    status = stack.get("/auth/status", token=pair["access_token"]).json()
    assert status["user_id"] == tokens["user_id"] and status["amr"] == ["hwk"]
    refreshed = stack.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200 and refreshed.json()["amr"] == ["hwk"]

    audit = stack.db.audit.find_one({"target": tokens["user_id"], "action": "wallet.link"})
    assert audit["after"] == {"address": wallet.address, "chain": wallet.chain, "second_factor": False}
    assert audit["actor"] == tokens["user_id"] and audit["applied"] is True and audit["request_id"]


def test_lower_case_address_is_the_same_wallet(stack):
    wallet = EthWallet()
    tokens = account(stack, "lowercase@example.com")
    assert link(stack, wallet, tokens["access_token"]).status_code == 201
    c = challenge(stack, wallet, address=wallet.address.lower())
    assert c["address"] == wallet.address  # stored and shown EIP-55 checksummed
    done = stack.post("/auth/wallet/verify", {"nonce": c["nonce"], "signature": wallet.sign(c["message"])})
    assert done.status_code == 200 and done.json()["user_id"] == tokens["user_id"]


def test_a_replayed_signature_is_refused(stack):
    wallet = EthWallet()
    assert link(stack, wallet, account(stack, "replay@example.com")["access_token"]).status_code == 201
    c = challenge(stack, wallet)
    answer = {"nonce": c["nonce"], "signature": wallet.sign(c["message"])}
    assert stack.post("/auth/wallet/verify", answer).status_code == 200
    problem(stack.post("/auth/wallet/verify", answer), 401, "challenge_unknown")


def test_a_failed_answer_uses_the_challenge_up(stack):
    wallet = EthWallet()
    assert link(stack, wallet, account(stack, "one-try@example.com")["access_token"]).status_code == 201
    c = challenge(stack, wallet)
    problem(
        stack.post("/auth/wallet/verify", {"nonce": c["nonce"], "signature": EthWallet().sign(c["message"])}),
        401,
        "signature_mismatch",
    )
    problem(
        stack.post("/auth/wallet/verify", {"nonce": c["nonce"], "signature": wallet.sign(c["message"])}),
        401,
        "challenge_unknown",
    )


def test_an_expired_challenge_is_refused(stack):
    short = start_pdp({**stack.env, "WALLET_CHALLENGE_TTL_S": "1"}, workers=1)
    try:
        wallet = EthWallet()
        c = requests.post(
            short.url + "/api/v1/auth/wallet/challenge",
            json={"chain": "ethereum", "address": wallet.address},
            timeout=20,
        ).json()
        time.sleep(2.2)
        late = requests.post(
            short.url + "/api/v1/auth/wallet/verify",
            json={"nonce": c["nonce"], "signature": wallet.sign(c["message"])},
            timeout=20,
        )
        problem(late, 401, "challenge_expired")
    finally:
        short.stop()


def test_an_unknown_wallet_is_not_linked_while_sign_up_is_admin_only(stack):
    admin_only = start_pdp({**stack.env, "SIGNUP_MODE": "admin"}, workers=1)
    try:
        for wallet in (EthWallet(), TronWallet()):
            c = requests.post(
                admin_only.url + "/api/v1/auth/wallet/challenge",
                json={"chain": wallet.chain, "address": wallet.address},
                timeout=20,
            ).json()
            refused = requests.post(
                admin_only.url + "/api/v1/auth/wallet/verify",
                json={"nonce": c["nonce"], "signature": wallet.sign(c["message"])},
                timeout=20,
            )
            assert "/api/v1/users/me/wallets" in problem(refused, 401, "wallet_not_linked")["detail"]
            assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 0
    finally:
        admin_only.stop()


@pytest.mark.parametrize("wallet_type", [EthWallet, TronWallet])
def test_an_unknown_wallet_signs_up_while_sign_up_is_open(stack, wallet_type):
    wallet = wallet_type()
    first = verify(stack, wallet)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["account_created"] is True and body["amr"] == ["hwk"] and body["mfa"] is False
    me = stack.get("/users/me", token=body["access_token"]).json()
    assert me["id"] == body["user_id"] and me["email"] is None and me["status"] == "active"
    assert me["wallets"] == [wallet.address]
    actions = sorted(r["action"] for r in stack.db.audit.find({"target": body["user_id"]}))
    assert actions == ["user.create", "wallet.link"]
    again = verify(stack, wallet)
    assert again.status_code == 200 and again.json()["user_id"] == body["user_id"]
    assert "account_created" not in again.json()


def test_parallel_first_sign_ins_of_one_wallet_make_one_account(stack):
    from concurrent.futures import ThreadPoolExecutor

    wallet = EthWallet()
    answers = []
    for _ in range(6):
        c = challenge(stack, wallet)
        answers.append({"nonce": c["nonce"], "signature": wallet.sign(c["message"])})
    with ThreadPoolExecutor(len(answers)) as pool:
        results = list(pool.map(lambda a: stack.post("/auth/wallet/verify", a), answers))
    assert [r.status_code for r in results] == [200] * 6, [r.text for r in results]
    assert len({r.json()["user_id"] for r in results}) == 1
    assert sum(1 for r in results if r.json().get("account_created")) == 1
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 1


def test_the_wrong_chain_prefix_is_refused(stack):
    wallet = TronWallet()
    assert link(stack, wallet, account(stack, "wrong-chain@example.com")["access_token"]).status_code == 201
    # The same key signing the TRON challenge as an Ethereum personal_sign.
    problem(verify(stack, wallet, sign=wallet.sign_as_ethereum), 401, "signature_mismatch")
    # A TRON address offered as an Ethereum one, and an unknown chain.
    problem(
        stack.post("/auth/wallet/challenge", {"chain": "ethereum", "address": wallet.address}), 400, "address_invalid"
    )
    problem(
        stack.post("/auth/wallet/challenge", {"chain": "bitcoin", "address": wallet.address}), 400, "chain_unsupported"
    )


def test_a_message_for_another_domain_is_refused(stack):
    wallet = EthWallet()
    assert link(stack, wallet, account(stack, "domain@example.com")["access_token"]).status_code == 201
    # The domain comes from settings: a Host header changes nothing.
    c = stack.post(
        "/auth/wallet/challenge", {"chain": "ethereum", "address": wallet.address}, headers={"Host": "evil.example"}
    ).json()
    assert c["message"].startswith("login.gateway.example wants you") and "evil" not in c["message"]
    # A phishing site's text with the same nonce: the wallet signed another domain.
    phished = c["message"].replace("login.gateway.example", "login.gateway.example.evil.example")
    problem(
        stack.post("/auth/wallet/verify", {"nonce": c["nonce"], "signature": wallet.sign(phished)}),
        401,
        "signature_mismatch",
    )


def test_a_malleable_high_s_signature_is_refused(stack):
    wallet = EthWallet()
    assert link(stack, wallet, account(stack, "malleable@example.com")["access_token"]).status_code == 201

    def high_s(text):
        raw = bytes.fromhex(wallet.sign(text)[2:])
        s = int.from_bytes(raw[32:64], "big")
        return "0x" + (raw[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - raw[64]])).hex()

    problem(verify(stack, wallet, sign=high_s), 401, "signature_malleable")


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda sig: sig[:-2], "signature_malformed"),  # truncated by a byte
        (lambda sig: sig[:66], "signature_malformed"),
        (lambda sig: "0x" + "zz" * 65, "signature_malformed"),  # garbage
        (lambda sig: "", "signature_malformed"),
        (lambda sig: sig[:-2] + "25", "signature_malformed"),  # v = 37 (EIP-155 style)
        (lambda sig: sig + sig[2:], "contract_wallet_unsupported"),  # 130 bytes: an EIP-1271 multi-owner signature
        (lambda sig: sig + "6492" * 16, "contract_wallet_unsupported"),
    ],
)
def test_bad_signatures_are_401_with_a_reason(stack, mangle, reason):
    wallet = EthWallet()
    problem(verify(stack, wallet, sign=lambda text: mangle(wallet.sign(text))), 401, reason)


def test_a_checksum_mangled_address_is_refused(stack):
    wallet = EthWallet()
    i = next(i for i, ch in enumerate(wallet.address) if i > 1 and ch.isalpha())
    mangled = wallet.address[:i] + wallet.address[i].swapcase() + wallet.address[i + 1 :]
    body = problem(
        stack.post("/auth/wallet/challenge", {"chain": "ethereum", "address": mangled}), 400, "address_checksum_invalid"
    )
    assert "EIP-55" in body["detail"]
    tron = TronWallet().address
    bad_tron = tron[:-1] + ("A" if tron[-1] != "A" else "B")
    problem(
        stack.post("/auth/wallet/challenge", {"chain": "tron", "address": bad_tron}), 400, "address_checksum_invalid"
    )


def test_malformed_requests_are_400(stack):
    for body in [
        b"{not json",
        b"[]",
        b'{"chain": "ethereum"}',
        b'{"chain": 1, "address": "x"}',
        b'{"chain": "ethereum", "address": "0x00", "extra": 1}',
        b"\xff\xfe",
    ]:
        response = requests.post(
            stack.api + "/auth/wallet/challenge", data=body, timeout=20, headers={"Content-Type": "application/json"}
        )
        problem(response, 400)
    for body in [b"{", b'{"nonce": "a"}', b'{"nonce": 1, "signature": "0x"}']:
        response = requests.post(
            stack.api + "/auth/wallet/verify", data=body, timeout=20, headers={"Content-Type": "application/json"}
        )
        problem(response, 400)
    problem(stack.post("/auth/wallet/verify", {"nonce": "not-a-nonce", "signature": "0x00"}), 401, "challenge_unknown")
    problem(
        stack.post("/auth/wallet/challenge", {"chain": "ethereum", "address": EthWallet().address, "purpose": "root"}),
        400,
        "purpose_invalid",
    )


def test_a_wallet_belongs_to_one_account(stack):
    wallet = EthWallet()
    first = account(stack, "first-owner@example.com")
    second = account(stack, "second-owner@example.com")
    assert link(stack, wallet, first["access_token"]).status_code == 201
    taken = link(stack, wallet, second["access_token"])
    problem(taken, 409)
    again = link(stack, wallet, first["access_token"])
    problem(again, 409)
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 1
    indexes = stack.db.users.index_information()
    assert any(ix.get("unique") and ix["key"] == [("wallets.address", 1)] for ix in indexes.values())
    record = stack.db.audit.find_one({"target": second["user_id"], "action": "wallet.link"})
    assert record["applied"] is False


def test_linking_needs_a_fresh_link_challenge_of_this_account(stack):
    wallet = EthWallet()
    tokens = account(stack, "fresh-link@example.com")
    other = account(stack, "other-link@example.com")
    # A sign-in challenge's signature links nothing.
    c = challenge(stack, wallet)
    problem(
        stack.post(
            "/users/me/wallets",
            {"nonce": c["nonce"], "signature": wallet.sign(c["message"])},
            token=tokens["access_token"],
        ),
        401,
        "challenge_purpose",
    )
    # Nor does one made for another account.
    c = challenge(stack, wallet, "link", other["access_token"])
    assert "Link this wallet" in c["message"]
    problem(
        stack.post(
            "/users/me/wallets",
            {"nonce": c["nonce"], "signature": wallet.sign(c["message"])},
            token=tokens["access_token"],
        ),
        401,
        "challenge_purpose",
    )
    # A link challenge is not a sign-in one either.
    c = challenge(stack, wallet, "link", tokens["access_token"])
    problem(
        stack.post("/auth/wallet/verify", {"nonce": c["nonce"], "signature": wallet.sign(c["message"])}),
        401,
        "challenge_purpose",
    )
    # Without a token there is no link challenge, and no link.
    problem(
        stack.post("/auth/wallet/challenge", {"chain": "ethereum", "address": wallet.address, "purpose": "link"}),
        401,
        "authentication_required",
    )
    problem(stack.post("/users/me/wallets", {"nonce": "a" * 32, "signature": "0x00"}), 401, "authentication_required")
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 0


def test_unlinking_is_audited_and_ends_wallet_sign_in(stack):
    wallet = TronWallet()
    tokens = account(stack, "unlink@example.com")
    token = tokens["access_token"]
    assert link(stack, wallet, token).status_code == 201
    listed = stack.get("/users/me/wallets", token=token).json()["wallets"]
    assert [w["address"] for w in listed] == [wallet.address] and listed[0]["added_at"].endswith("Z")
    gone = requests.delete(
        f"{stack.api}/users/me/wallets/{wallet.address}", timeout=20, headers={"Authorization": f"Bearer {token}"}
    )
    assert gone.status_code == 204, gone.text
    record = stack.db.audit.find_one({"target": tokens["user_id"], "action": "wallet.unlink"})
    assert (
        record["before"] == {"address": wallet.address, "chain": "tron", "second_factor": False}
        and record["after"] == {}
    )
    # The wallet no longer opens this account (sign-up is open here: it makes a new one).
    after = verify(stack, wallet).json()
    assert after["user_id"] != tokens["user_id"] and after["account_created"] is True
    again = requests.delete(
        f"{stack.api}/users/me/wallets/{wallet.address}", timeout=20, headers={"Authorization": f"Bearer {token}"}
    )
    problem(again, 404)
    bad = requests.delete(
        f"{stack.api}/users/me/wallets/0x1234", timeout=20, headers={"Authorization": f"Bearer {token}"}
    )
    problem(bad, 400, "address_invalid")


def _totp_account(stack, email):
    """An account with confirmed TOTP and a token with mfa true: (tokens, secret)."""
    away_from_step_edge()
    stack.sign_up(email)
    token = stack.sign_in(email)["access_token"]
    secret = stack.post("/users/me/totp", token=token).json()["secret"]
    assert stack.post("/users/me/totp/confirm", {"code": code_at(secret, -1)}, token=token).status_code == 200
    first = stack.post("/auth/verify", {"token": stack.magic_token(email)}).json()
    done = stack.post("/auth/verify", {"mfa_token": first["mfa_token"], "code": code_at(secret, 0)})
    assert done.status_code == 200 and done.json()["mfa"] is True, done.text
    return done.json(), secret


def test_an_account_with_totp_still_needs_its_code_after_a_wallet(stack):
    wallet = EthWallet()
    tokens, secret = _totp_account(stack, "wallet-totp@example.com")
    assert link(stack, wallet, tokens["access_token"]).status_code == 201
    first = verify(stack, wallet)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["mfa_required"] is True and "access_token" not in body and "refresh_token" not in body
    done = stack.post("/auth/verify", {"mfa_token": body["mfa_token"], "code": code_at(secret, 1)})
    assert done.status_code == 200, done.text
    assert done.json()["mfa"] is True and done.json()["amr"] == ["hwk", "otp"]


def test_a_wallet_linked_as_second_factor_is_both_factors(stack):
    wallet = EthWallet()
    tokens, _ = _totp_account(stack, "wallet-2fa@example.com")
    linked = link(stack, wallet, tokens["access_token"], second_factor=True)
    assert linked.status_code == 201 and linked.json()["second_factor"] is True
    done = verify(stack, wallet)
    assert done.status_code == 200, done.text
    assert done.json()["mfa"] is True and done.json()["amr"] == ["hwk"] and "access_token" in done.json()


def test_a_second_factor_wallet_needs_a_two_factor_session(stack):
    wallet = EthWallet()
    tokens, secret = _totp_account(stack, "weak-session@example.com")
    one_factor = token_for(tokens["user_id"], auth_time=int(time.time()))
    # A fresh sign-in with one of the account's two factors links no wallet, second factor or not.
    problem(link(stack, wallet, one_factor, second_factor=True), 401, "reauth_required")
    problem(link(stack, wallet, one_factor), 401, "reauth_required")
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 0


def test_linking_and_unlinking_a_wallet_need_a_recent_sign_in(stack):
    wallet = EthWallet()
    tokens = account(stack, "wallet-step-up@example.com")
    stale = token_for(tokens["user_id"], auth_time=int(time.time()) - 700)
    legacy = token_for(tokens["user_id"], auth_time=None)
    c = challenge(stack, wallet, "link", stale)  # a challenge changes nothing: any session may ask
    answer = {"nonce": c["nonce"], "signature": wallet.sign(c["message"])}
    for old in (stale, legacy):
        refused = problem(stack.post("/users/me/wallets", answer, token=old), 401, "reauth_required")
        assert refused["type"].endswith("/reauth-required") and refused["max_age_s"] == 600
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 0
    assert stack.db.audit.count_documents({"target": tokens["user_id"], "action": "wallet.link"}) == 0
    # The challenge was not used up: after signing in again, the same signature links.
    assert stack.post("/users/me/wallets", answer, token=tokens["access_token"]).status_code == 201
    gone = requests.delete(
        f"{stack.api}/users/me/wallets/{wallet.address}", timeout=20, headers={"Authorization": f"Bearer {stale}"}
    )
    problem(gone, 401, "reauth_required")
    assert 'error="insufficient_user_authentication"' in gone.headers["WWW-Authenticate"]
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 1


def test_of_parallel_links_of_one_wallet_to_many_accounts_one_wins(stack):
    """The unique index decides, not a read before the write."""
    from concurrent.futures import ThreadPoolExecutor

    wallet = EthWallet()
    tokens = [account(stack, f"racer-{i}@example.com")["access_token"] for i in range(8)]
    answers = []
    for token in tokens:
        c = challenge(stack, wallet, "link", token)
        answers.append((token, {"nonce": c["nonce"], "signature": wallet.sign(c["message"])}))
    with ThreadPoolExecutor(len(answers)) as pool:
        codes = list(pool.map(lambda a: stack.post("/users/me/wallets", a[1], token=a[0]).status_code, answers))
    assert sorted(codes) == [201] + [409] * 7, codes
    assert stack.db.users.count_documents({"wallets.address": wallet.address}) == 1


def test_dependencies_down_are_503_never_500(stack):
    from tests.support.ports import free_port

    wallet = EthWallet()
    no_mongo = start_pdp({**stack.env, "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/lucid_gateway"}, workers=1)
    no_redis = start_pdp({**stack.env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, workers=1)
    try:
        c = requests.post(
            no_mongo.url + "/api/v1/auth/wallet/challenge",
            json={"chain": "ethereum", "address": wallet.address},
            timeout=20,
        ).json()
        down = requests.post(
            no_mongo.url + "/api/v1/auth/wallet/verify",
            json={"nonce": c["nonce"], "signature": wallet.sign(c["message"])},
            timeout=20,
        )
        assert problem(down, 503)["dependency"] == "mongodb"
        down = requests.post(
            no_redis.url + "/api/v1/auth/wallet/challenge",
            json={"chain": "ethereum", "address": wallet.address},
            timeout=20,
        )
        assert problem(down, 503)["dependency"] == "redis"
    finally:
        no_mongo.stop()
        no_redis.stop()


def test_wallet_sign_in_can_be_turned_off(stack):
    off = start_pdp({**stack.env, "WALLET_SIGNIN_ENABLED": "false"}, workers=1)
    try:
        body = {"chain": "ethereum", "address": EthWallet().address}
        assert requests.post(off.url + "/api/v1/auth/wallet/challenge", json=body, timeout=20).status_code == 404
        assert (
            requests.post(off.url + "/api/v1/auth/login", json={"email": "x@example.com"}, timeout=20).status_code
            == 202
        )
    finally:
        off.stop()
