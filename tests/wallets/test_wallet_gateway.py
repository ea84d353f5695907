"""Wallet sign-in through the real proxy (default routes) in front of the PDP:
the gateway's policy lets the challenge and verify through anonymously, and
linking only with a token; the wallet's tokens then open protected routes."""

import pytest
import requests

from tests.accounts.stack import behind_the_proxy

from .test_wallet_signin import EthWallet, TronWallet


@pytest.fixture(scope="module")
def gateway():
    with behind_the_proxy() as (stack, proxy_url):
        yield stack, proxy_url + "/api/v1"


@pytest.mark.parametrize("wallet_type", [EthWallet, TronWallet])
def test_wallet_sign_in_through_the_gateway(gateway, wallet_type):
    stack, api = gateway
    wallet = wallet_type()
    email = f"gw-{wallet.chain}@example.com"
    stack.sign_up(email)
    auth = {"Authorization": "Bearer " + stack.sign_in(email)["access_token"]}
    # Linking needs a token at the gateway already.
    anonymous = requests.post(api + "/users/me/wallets", json={"nonce": "a" * 32, "signature": "0x00"}, timeout=20)
    assert anonymous.status_code == 401
    c = requests.post(
        api + "/auth/wallet/challenge",
        json={"chain": wallet.chain, "address": wallet.address, "purpose": "link"},
        headers=auth,
        timeout=20,
    ).json()
    linked = requests.post(
        api + "/users/me/wallets",
        json={"nonce": c["nonce"], "signature": wallet.sign(c["message"])},
        headers=auth,
        timeout=20,
    )
    assert linked.status_code == 201, linked.text

    c = requests.post(
        api + "/auth/wallet/challenge", json={"chain": wallet.chain, "address": wallet.address}, timeout=20
    )
    assert c.status_code == 200, c.text
    c = c.json()
    # No WALLET_DOMAIN/WALLET_URI in this stack: both come from PUBLIC_BASE_URL, not from the proxy's Host.
    assert (
        c["message"].startswith("gateway.example wants you to sign in")
        and "\nURI: https://gateway.example\n" in c["message"]
    )
    tokens = requests.post(
        api + "/auth/wallet/verify", json={"nonce": c["nonce"], "signature": wallet.sign(c["message"])}, timeout=20
    )
    assert tokens.status_code == 200, tokens.text
    seen = requests.get(
        api + "/sessions", headers={"Authorization": "Bearer " + tokens.json()["access_token"]}, timeout=20
    )
    assert seen.status_code == 200, seen.text
    assert seen.json()["headers"]["x-user-id"] == tokens.json()["user_id"]
    # A replay is refused with the PDP's reason, through the gateway too.
    replay = requests.post(
        api + "/auth/wallet/verify", json={"nonce": c["nonce"], "signature": wallet.sign(c["message"])}, timeout=20
    )
    assert replay.status_code == 401 and replay.json()["reason"] == "challenge_unknown"
    gone = requests.delete(f"{api}/users/me/wallets/{wallet.address}", headers=auth, timeout=20)
    assert gone.status_code == 204, gone.text
