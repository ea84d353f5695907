"""Wallet challenges in a real redis-server: single use, atomic, expiring."""

import threading

import pytest
import redis

from pdp.wallets.challenges import Challenges
from pdp.wallets.errors import ChallengeStoreUnavailable, WalletRefused
from tests.support.ports import free_port

ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def client(redis_server):
    return redis.Redis.from_url(redis_server.redis_url, socket_timeout=2)


def make(client, clock=None, ttl=300):
    return Challenges(
        client,
        ttl,
        domain="login.example.com",
        uri="https://login.example.com",
        chain_ids={"ethereum": 1, "tron": 728126428},
        service_name="lucid",
        clock=clock or Clock(),
    )


def test_a_challenge_is_the_eip4361_text_and_is_taken_once(client):
    clock = Clock()
    store = make(client, clock)
    c = store.issue("ethereum", ADDRESS.lower())
    assert c.address == ADDRESS
    assert len(c.nonce) == 32 and int(c.nonce, 16) >= 0  # 128 bits of hex
    assert c.message.splitlines() == [
        "login.example.com wants you to sign in with your Ethereum account:",
        ADDRESS,
        "",
        "Sign in to lucid.",
        "",
        "URI: https://login.example.com",
        "Version: 1",
        "Chain ID: 1",
        f"Nonce: {c.nonce}",
        "Issued At: 2027-01-15T08:00:00Z",
        "Expiration Time: 2027-01-15T08:05:00Z",
    ]
    assert store.take(c.nonce) == c
    with pytest.raises(WalletRefused) as info:
        store.take(c.nonce)
    assert info.value.reason == "challenge_unknown"


def test_nonces_differ(client):
    store = make(client)
    assert len({store.issue("ethereum", ADDRESS).nonce for _ in range(50)}) == 50


def test_tron_challenges_carry_the_tron_chain_id(client):
    c = make(client).issue("tron", "TWWb9EjUWai17YEVB7FR8hreupYJKG9sMR")
    assert "your TRON account:\nTWWb9EjUWai17YEVB7FR8hreupYJKG9sMR\n" in c.message
    assert "\nChain ID: 728126428\n" in c.message


def test_a_link_challenge_says_so_and_names_its_account(client):
    c = make(client).issue("ethereum", ADDRESS, purpose="link", user_id="u_1")
    assert "Link this wallet to your lucid account." in c.message
    assert make(client).take(c.nonce).user_id == "u_1"


def test_an_expired_challenge_is_refused_and_gone(client):
    clock = Clock()
    store = make(client, clock, ttl=300)
    c = store.issue("ethereum", ADDRESS)
    clock.now += 301
    with pytest.raises(WalletRefused) as info:
        store.take(c.nonce)
    assert info.value.reason == "challenge_expired"
    assert client.exists("lucid:wallet:challenge:" + c.nonce) == 0


def test_redis_forgets_the_key_soon_after_expiry(client):
    c = make(client, ttl=300).issue("ethereum", ADDRESS)
    assert 300 < client.ttl("lucid:wallet:challenge:" + c.nonce) <= 360


@pytest.mark.parametrize("nonce", ["", "x", "A" * 32, "g" * 32, None, 5, "a" * 33, "*"])
def test_malformed_nonces_are_unknown(client, nonce):
    with pytest.raises(WalletRefused) as info:
        make(client).take(nonce)
    assert info.value.reason == "challenge_unknown"


@pytest.mark.parametrize("record", [b"not json", b"{}", b'{"nonce": "x", "surprise": 1}'])
def test_an_unreadable_record_is_an_unknown_challenge(client, record):
    client.set("lucid:wallet:challenge:" + "b" * 32, record, ex=60)
    with pytest.raises(WalletRefused) as info:
        make(client).take("b" * 32)
    assert info.value.reason == "challenge_unknown"


def test_of_parallel_takes_exactly_one_wins(client):
    store = make(client)
    c = store.issue("ethereum", ADDRESS)
    results = []
    barrier = threading.Barrier(20)

    def take():
        barrier.wait(5)
        try:
            results.append(store.take(c.nonce))
        except WalletRefused as err:
            results.append(err.reason)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count("challenge_unknown") == 19 and c in results


def test_bad_address_and_purpose_are_bad_input(client):
    store = make(client)
    for chain, address, purpose in [
        ("ethereum", "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "sign_in"),
        ("dogecoin", ADDRESS, "sign_in"),
        ("ethereum", ADDRESS, "admin"),
    ]:
        with pytest.raises(WalletRefused) as info:
            store.issue(chain, address, purpose=purpose)
        assert info.value.bad_input


def test_redis_down_is_unavailable_not_a_crash():
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.5, socket_connect_timeout=0.5)
    store = make(dead)
    with pytest.raises(ChallengeStoreUnavailable):
        store.issue("ethereum", ADDRESS)
    with pytest.raises(ChallengeStoreUnavailable):
        store.take("a" * 32)
