"""Magic links: 202 either way, single use, GET never redeems, rate limits."""

import concurrent.futures
import time

import pytest
import redis as redis_lib
import requests

from pdp.accounts.errors import AuthFailed
from pdp.accounts.magic_links import MagicLinks
from tests.support.redis_server import start_redis


def test_login_answers_202_whether_or_not_the_account_exists(stack):
    stack.sign_up("exists@example.com")
    known = stack.post("/auth/login", {"email": "exists@example.com"})
    unknown = stack.post("/auth/login", {"email": "nobody-here@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert len(stack.mail.wait_for("exists@example.com")) == 1
    time.sleep(0.5)
    assert stack.mail.wait_for("nobody-here@example.com", timeout=0) == []


def test_the_token_is_stored_only_as_a_hash(stack):
    stack.sign_up("hashed@example.com")
    token = stack.magic_token("hashed@example.com")
    for key in stack.redis_client.scan_iter("lucid:auth:ml:*"):
        assert token.encode() not in key
        value = stack.redis_client.get(key)
        assert value is None or token.encode() not in value
    assert len(token) == 43  # 256 bits, base64url


def test_get_shows_a_form_and_never_redeems(stack):
    stack.sign_up("scanner@example.com")
    token = stack.magic_token("scanner@example.com")
    for _ in range(3):  # a mail scanner fetching the link, repeatedly
        page = requests.get(stack.api + "/auth/magic", params={"token": token}, timeout=10)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert 'method="post"' in page.text and token in page.text
        assert page.headers["Cache-Control"] == "no-store"
    assert stack.post("/auth/verify", {"token": token}).status_code == 200


def test_the_page_redeems_with_a_post_and_shows_the_tokens(stack):
    stack.sign_up("page@example.com")
    token = stack.magic_token("page@example.com")
    page = requests.post(stack.api + "/auth/magic", data={"token": token}, timeout=10)
    assert page.status_code == 200, page.text
    assert 'id="access_token">ey' in page.text and 'id="refresh_token">rt_' in page.text
    again = requests.post(stack.api + "/auth/magic", data={"token": token}, timeout=10)
    assert again.status_code == 401 and "magic_link_used" in again.text


def test_a_used_link_is_refused_with_its_reason(stack):
    stack.sign_up("once@example.com")
    token = stack.magic_token("once@example.com")
    assert stack.post("/auth/verify", {"token": token}).status_code == 200
    again = stack.post("/auth/verify", {"token": token})
    assert again.status_code == 401
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json()["reason"] == "magic_link_used"


def test_an_unknown_link_is_refused_with_its_reason(stack):
    for token in ("A" * 43, "short", "x" * 43 + "!"):
        response = stack.post("/auth/verify", {"token": token})
        assert response.status_code == 401
        assert response.json()["reason"] == "magic_link_unknown"


def test_parallel_redeems_of_one_link_have_one_winner(stack):
    stack.sign_up("race-link@example.com")
    token = stack.magic_token("race-link@example.com")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: stack.post("/auth/verify", {"token": token}).status_code, range(10)))
    assert sorted(codes) == [200] + [401] * 9


def test_login_is_rate_limited_per_email(stack):
    stack.sign_up("limited@example.com")
    codes = [stack.post("/auth/login", {"email": "limited@example.com"}).status_code for _ in range(6)]
    assert codes == [202] * 5 + [429]
    # Unknown addresses are limited the same way: a 429 says nothing about existence.
    codes = [stack.post("/auth/login", {"email": "limited-ghost@example.com"}).status_code for _ in range(6)]
    assert codes == [202] * 5 + [429]


def test_login_is_rate_limited_per_ip(stack):
    ip = "203.0.113.99"
    codes = [stack.post("/auth/login", {"email": f"ip{i}@example.com"}, ip=ip).status_code for i in range(21)]
    assert codes == [202] * 20 + [429]
    limited = stack.post("/auth/login", {"email": "ip-other@example.com"}, ip=ip)
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) > 0
    assert stack.post("/auth/login", {"email": "ip-other@example.com"}, ip="203.0.113.100").status_code == 202


def test_a_client_cannot_choose_its_ip_unless_it_is_a_trusted_proxy():
    # The PDP's X-Forwarded-For handling, through its own module.
    from pdp.signin.http import ClientInfo

    class Req:
        def __init__(self, peer, xff):
            self.remote_addr, self._xff, self.user_agent = peer, xff, ""
            self.context = type("C", (), {})()

        def get_header(self, name):
            return self._xff

    info = ClientInfo(("127.0.0.1/32",))
    assert info(Req("192.0.2.5", "10.0.0.1")).ip == "192.0.2.5"
    assert info(Req("127.0.0.1", "10.0.0.1, 192.0.2.7")).ip == "192.0.2.7"
    assert info(Req("127.0.0.1", "")).ip == "127.0.0.1"


@pytest.fixture(scope="module")
def redis_server():
    server = start_redis()
    yield server
    server.stop()


def test_an_expired_link_is_refused_as_expired(redis_server):
    client = redis_lib.Redis.from_url(redis_server.redis_url)
    now = [1_000_000.0]
    links = MagicLinks(client, ttl_s=900, clock=lambda: now[0])
    token = links.create("u_1", "late@example.com")
    now[0] += 901
    with pytest.raises(AuthFailed) as err:
        links.redeem(token)
    assert err.value.reason == "magic_link_expired"
    with pytest.raises(AuthFailed) as err:
        links.redeem(token)
    assert err.value.reason == "magic_link_used"


def test_the_saved_mail_holds_the_link_verbatim(stack):
    # make run users grep run/mail/*.eml: no quoted-printable soft breaks or =3D in the link.
    stack.sign_up("verbatim@example.com")
    token = stack.magic_token("verbatim@example.com")
    raw = b"".join(p.read_bytes() for p in stack.mail.dir.glob("*.eml")).decode()
    assert f"/api/v1/auth/magic?token={token}" in raw
