"""In-process checks of the small state machines, driven by a hand-moved clock."""

import pytest

from proxy.accesslog import redact_query
from proxy.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerRejected
from proxy.forwarding import ClientAddress, request_id
from proxy.meta import MetaEndpoints
from proxy.pdp import Decision, PdpUnavailable, VerdictCache, parse_decision
from proxy.routes import BreakerSpec
from servicekit.settings import cidr_list as _cidr_list


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_breaker_cycle_closed_open_half_open_closed():
    clock = Clock()
    breaker = Breaker(BreakerSpec(failure_threshold=2, open_s=5, half_open_max=1), clock)
    for _ in range(2):
        probe = breaker.acquire(0.1)
        breaker.release(False, probe)
    assert breaker.state == OPEN
    with pytest.raises(BreakerRejected, match="circuit open"):
        breaker.acquire(0.1)
    clock.now += 5
    probe = breaker.acquire(0.1)
    assert probe and breaker.state == HALF_OPEN
    with pytest.raises(BreakerRejected, match="probe in flight"):
        breaker.acquire(0.1)
    breaker.release(True, probe)
    assert breaker.state == CLOSED


def test_failed_probe_opens_the_breaker_again():
    clock = Clock()
    breaker = Breaker(BreakerSpec(failure_threshold=1, open_s=5), clock)
    breaker.release(False, breaker.acquire(0.1))
    clock.now += 5
    breaker.release(False, breaker.acquire(0.1))
    assert breaker.state == OPEN
    with pytest.raises(BreakerRejected):
        breaker.acquire(0.1)


def test_success_resets_the_failure_count():
    breaker = Breaker(BreakerSpec(failure_threshold=3), Clock())
    for success in (False, False, True, False, False):
        breaker.release(success, breaker.acquire(0.1))
    assert breaker.state == CLOSED


def decision(revision="r1", ttl=10.0, allow=True, who="alice"):
    return Decision(
        allow=allow,
        status=200 if allow else 403,
        reason="ok",
        headers={"x-user-id": who},
        policy_revision=revision,
        cache_ttl_s=ttl,
    )


def test_verdict_cache_keeps_only_cacheable_allows_until_their_ttl():
    clock = Clock()
    cache = VerdictCache(10, clock)
    cache.observe("k1", decision(ttl=10))
    cache.observe("k2", decision(ttl=0))
    cache.observe("k3", decision(allow=False))
    assert cache.get("k1").cached and cache.get("k2") is None and cache.get("k3") is None
    clock.now += 10
    assert cache.get("k1") is None


def test_verdict_cache_is_bounded_lru():
    cache = VerdictCache(2, Clock())
    cache.observe("a", decision())
    cache.observe("b", decision())
    cache.get("a")
    cache.observe("c", decision())
    assert len(cache) == 2 and cache.get("b") is None and cache.get("a") is not None


def test_a_new_policy_revision_empties_the_cache():
    cache = VerdictCache(10, Clock())
    cache.observe("a", decision("r1"))
    cache.observe("b", decision("r2", ttl=0))
    assert cache.get("a") is None and cache.revision == "r2"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"allow": "yes"}',
        b'{"allow": true, "status": 99}',
        b'{"allow": true, "headers": {"x-a": "1\\r\\nx-b: 2"}}',
        b'{"allow": true, "headers": {"bad name": "1"}}',
        b'{"allow": true, "headers": []}',
    ],
)
def test_a_malformed_pdp_answer_is_never_an_allow(body):
    with pytest.raises(PdpUnavailable):
        parse_decision(body)


def test_deny_with_a_success_status_stays_a_deny():
    parsed = parse_decision(b'{"allow": false, "status": 200}')
    assert parsed.allow is False and parsed.status == 403


def test_forwarded_for_chain_from_trusted_proxies():
    resolver = ClientAddress(_cidr_list("10.0.0.0/8"))
    headers = [("x-forwarded-for", "203.0.113.5, 10.1.1.1")]
    assert resolver.resolve("10.2.2.2", headers, "http", "h")[0] == "203.0.113.5"
    assert resolver.resolve("198.51.100.1", headers, "http", "h")[0] == "198.51.100.1"
    garbage = [("x-forwarded-for", "not-an-ip, 10.1.1.1")]
    assert resolver.resolve("10.2.2.2", garbage, "http", "h")[0] == "10.1.1.1"


def test_request_id_and_query_redaction():
    assert request_id("abcdefgh-1234") == "abcdefgh-1234"
    assert request_id("short") != "short"
    assert (
        redact_query("a=1&access_token=x&refresh_token=y&code=z&my_secret=s&page=2")
        == "a=1&access_token=REDACTED&refresh_token=REDACTED&code=REDACTED&my_secret=REDACTED&page=2"
    )


def test_decision_but_is_dataclasses_replace():
    import dataclasses

    original = Decision(True, 200, "ok", headers={"x-user-id": "u1"}, lease={"id": "l", "units": 3, "ttl_s": 1.0})
    copy = original.but(cached=True, lease=None)
    assert copy == dataclasses.replace(original, cached=True, lease=None)
    assert type(copy) is Decision and original.cached is False and original.lease is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.allow = False  # still frozen
    with pytest.raises(TypeError, match="no field"):
        original.but(alow=False)  # a misspelt field is refused, as replace() refuses it


def test_send_all_writes_everything_when_one_send_takes_only_part():
    import gevent
    from gevent import socket

    from proxy.http11 import send_all

    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 8192  # 2 MiB: far more than one send() takes
    got = bytearray()

    def read():
        while len(got) < len(data):
            chunk = b.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    reader = gevent.spawn(read)
    with gevent.Timeout(20):
        send_all(a, data)
        reader.join()
    a.close()
    b.close()
    assert bytes(got) == data


def test_a_pdp_answer_header_that_could_inject_a_line_or_not_be_sent_is_refused():
    from proxy.pdp import decision_from_doc
    from proxy.pdp_errors import PdpUnavailable

    good = decision_from_doc({"allow": True, "headers": {"X-User-Id": "u1"}, "response_headers": {"ratelimit": "a=1"}})
    assert good.headers == {"x-user-id": "u1"} and good.response_headers == {"ratelimit": "a=1"}
    for field in ("headers", "response_headers"):
        for bad in (
            {"x-a": "v\r\nx-b: 1"},
            {"x-a": "v\n"},
            {"x-a": "v\x00"},
            {"x a": "v"},
            {"x:a": "v"},
            {"": "v"},
            {"x-a": "\u540d"},  # not Latin-1: the head could not be sent
            {"x-\u0100": "v"},
        ):
            with pytest.raises(PdpUnavailable, match="invalid header"):
                decision_from_doc({"allow": True, field: bad})


def test_ignored_header_names_are_validated_every_time_a_new_list_comes():
    """`ignores` lists are remembered once validated; a malformed one is never
    taken, whether or not a good one was seen before, and credentials never leave the key."""
    from proxy.pdp import _ignores

    for _ in range(2):
        assert _ignores(["accept", "user-agent", "authorization", "cookie"]) == {"accept", "user-agent"}
    for bad in (["Accept"], ["accept", "x y"], ["a" * 65], [""], [{}], ["accept", 1], "accept", None):
        assert _ignores(bad) == frozenset()
        assert _ignores(bad) == frozenset()


def test_meta_names_count_only_right_after_the_meta_segment():
    # A policy allowing /api/v1/meta/<public>/... must not expose metrics or
    # version through /api/v1/meta/<public>/metrics: the handler once looked
    # at the last segment only.
    meta = MetaEndpoints("lucid", pdp=None, clusters={}, metrics=None, mode="gateway")
    assert meta.handle("GET", "/api/v1/meta/version")[0] == 200
    assert meta.handle("GET", "/api/v1/meta/info/")[0] == 200
    for path in (
        "/api/v1/meta/public/version",
        "/api/v1/meta/x/metrics",
        "/api/v1/meta/x/health/details",
        "/api/v1/meta/health/x/info",
        "/version",
        "/api/v1/metrics",
    ):
        assert meta.handle("GET", path) is None, path


@pytest.mark.parametrize("coding", ["chunked", "Chunked", " chunked , "])
def test_a_response_with_content_length_and_transfer_encoding_loses_the_length_and_its_connection(coding):
    # RFC 9112 6.3: possibly response splitting. Transfer-Encoding frames it (chunked, or
    # until close), the Content-Length is gone for every consumer, and no one reuses the socket.
    from proxy.http11 import parse_response_head

    head = f"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: {coding}\r\nX-A: 1".encode()
    resp = parse_response_head(head, "GET")
    assert (resp.chunked, resp.body_length, resp.keep_alive) == (True, None, False)
    assert resp.headers == [("transfer-encoding", coding.strip()), ("x-a", "1")]
    plain = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3", "GET")
    assert (plain.body_length, plain.keep_alive, plain.headers) == (3, True, [("content-length", "3")])


@pytest.mark.parametrize("codings", ["gzip", "xchunked", "gzip, chunked", "chunked, gzip", "chunked, chunked", ","])
def test_a_response_transfer_coding_other_than_chunked_is_a_protocol_error(codings):
    # The proxy drops Transfer-Encoding (hop-by-hop) and re-chunks: a gzip coding
    # reached the client undeclared, and "xchunked" was read as chunked.
    from proxy.http11 import ProtocolError, parse_response_head

    with pytest.raises(ProtocolError) as err:
        parse_response_head(f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {codings}".encode(), "GET")
    assert err.value.status == 502
