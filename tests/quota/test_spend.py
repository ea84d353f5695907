"""Spending on a real Redis (single server and 3-master Cluster): algorithms,
all-or-nothing, shadow, calendar windows, overrides and NOSCRIPT."""

from datetime import datetime, timezone

import pytest

from .conftest import descriptor


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def spend_n(service, descriptors, n):
    return [service.spend(descriptors, {}) for _ in range(n)]


def test_token_bucket_admits_burst_then_refills_at_limit(make_service, clock):
    service = make_service()
    d = [descriptor(limit=60, window_s=60, burst=5)]  # 1 token per second, 5 at once
    assert [v.allowed for v in spend_n(service, d, 6)] == [True] * 5 + [False]
    clock.advance(1.0)
    assert service.spend(d, {}).allowed
    assert not service.spend(d, {}).allowed
    clock.advance(10.0)  # refill caps at the burst
    assert [v.allowed for v in spend_n(service, d, 6)] == [True] * 5 + [False]


def test_rejection_is_429_with_retry_after_and_ratelimit_headers(make_service):
    service = make_service()
    d = [descriptor(name="login", limit=6, window_s=60, burst=2)]  # a token every 10 s
    first = service.spend(d, {})
    assert first.response_headers == {"ratelimit-policy": '"login";q=6;w=60', "ratelimit": '"login";r=1;t=10'}
    service.spend(d, {})
    denied = service.spend(d, {})
    assert (denied.allowed, denied.status, denied.reason) == (False, 429, "quota_exceeded")
    assert denied.retry_after_s == 10
    assert denied.response_headers["retry-after"] == "10"
    assert denied.response_headers["ratelimit"] == '"login";r=0;t=20'


def test_legacy_headers_behind_an_option(make_service):
    service = make_service(legacy_headers=True)
    headers = service.spend([descriptor(limit=10, burst=10)], {}).response_headers
    assert headers["ratelimit-limit"] == "10"
    assert headers["ratelimit-remaining"] == "9"
    assert headers["ratelimit-reset"] == "6"
    assert "ratelimit-limit" not in make_service().spend([descriptor(key="user:bob")], {}).response_headers


def test_headers_name_the_tightest_descriptor(make_service):
    service = make_service()
    d = [descriptor(name="roomy", limit=1000, burst=1000), descriptor(name="tight", limit=10, burst=3)]
    assert service.spend(d, {}).response_headers["ratelimit"].startswith('"tight";r=2;')


def test_rejected_request_spends_no_other_descriptor(make_service, redis_client):
    service = make_service()
    wide = descriptor(name="wide", limit=1000, burst=1000, window_s=3600)
    narrow = descriptor(name="narrow", limit=1, burst=1, window_s=3600)
    daily = descriptor(name="daily", limit=1000, algorithm="calendar_day", window_s=86400)
    assert service.spend([wide, narrow, daily], {}).allowed
    for _ in range(5):
        assert service.spend([wide, narrow, daily], {}).status == 429
    # Only the first request spent: 999 left in both wide counters.
    verdict = service.spend([wide, daily], {})
    remaining = {d.name: o.remaining for d, o in verdict.details}
    assert remaining == {"wide": 998, "daily": 998}


def test_shadow_descriptor_counts_but_never_rejects(make_service, metrics):
    service = make_service(metrics=metrics)
    d = [descriptor(name="trial", limit=2, burst=2, shadow=True), descriptor(name="real", limit=100, burst=100)]
    verdicts = spend_n(service, d, 5)
    assert all(v.allowed for v in verdicts)
    shadow_outcomes = [dict((x.name, o) for x, o in v.details)["trial"].allowed for v in verdicts]
    assert shadow_outcomes == [True, True, False, False, False]
    # Headers describe enforced limits only.
    assert verdicts[-1].response_headers["ratelimit"].startswith('"real";r=95;')
    value = metrics.registry.get_sample_value
    assert value("lucid_pdp_quota_decisions_total", {"descriptor": "trial", "result": "shadow_rejected"}) == 3
    assert value("lucid_pdp_quota_decisions_total", {"descriptor": "real", "result": "allowed"}) == 5


def test_calendar_day_rolls_over_at_utc_midnight(make_service, clock, redis_client):
    clock.now = utc(2027, 3, 9, 23, 59, 58)
    service = make_service()
    d = [descriptor(name="daily", limit=3, algorithm="calendar_day", window_s=86400)]
    assert [v.allowed for v in spend_n(service, d, 4)] == [True, True, True, False]
    denied = service.spend(d, {})
    assert denied.retry_after_s == 2  # until 00:00:00 UTC
    clock.now = utc(2027, 3, 9, 23, 59, 59, 999000)
    assert not service.spend(d, {}).allowed
    clock.now = utc(2027, 3, 10, 0, 0, 0)
    assert [v.allowed for v in spend_n(service, d, 4)] == [True, True, True, False]
    # The counter expires at its window end (real Redis TTL, relative to the clock).
    key = service.keys.counter("user:alice", "daily", "calendar_day", clock.now)[0]
    assert 86_390_000 < redis_client.pttl(key) <= 86_400_000


@pytest.mark.parametrize(
    "last_day, next_month",
    [
        ((2027, 1, 31), (2027, 2, 1)),
        ((2028, 2, 29), (2028, 3, 1)),  # leap year
        ((2027, 2, 28), (2027, 3, 1)),
        ((2027, 12, 31), (2028, 1, 1)),
    ],
)
def test_calendar_month_rolls_over_on_real_month_ends(make_service, clock, last_day, next_month):
    clock.now = utc(*last_day, 23, 59, 59)
    service = make_service()
    d = [descriptor(name="monthly", limit=2, algorithm="calendar_month", window_s=2592000)]
    assert [v.allowed for v in spend_n(service, d, 3)] == [True, True, False]
    clock.now = utc(*next_month, 0, 0, 0)
    assert [v.allowed for v in spend_n(service, d, 3)] == [True, True, False]


def test_calendar_month_is_not_a_30_day_block(make_service, clock):
    clock.now = utc(2027, 1, 1, 0, 0, 0)
    service = make_service()
    d = [descriptor(name="monthly", limit=1, algorithm="calendar_month", window_s=2592000)]
    assert service.spend(d, {}).allowed
    clock.now = utc(2027, 1, 31, 12, 0, 0)  # 30.5 days later, same month
    denied = service.spend(d, {})
    assert not denied.allowed and denied.retry_after_s == 12 * 3600


def test_cost_spends_several_units(make_service):
    service = make_service()
    d = [descriptor(limit=10, burst=10, cost=4)]
    assert [v.allowed for v in spend_n(service, d, 3)] == [True, True, False]


def test_noscript_after_script_flush_is_handled(make_service, redis_client):
    service = make_service()
    assert service.spend([descriptor()], {}).allowed
    redis_client.script_flush()
    verdict = service.spend([descriptor()], {})
    assert verdict.allowed and verdict.source == "redis"


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "key": "user:a"},  # no limit
        descriptor(limit=0),
        descriptor(limit=True),
        descriptor(algorithm="sliding_window"),
        descriptor(fail_mode="maybe"),
        descriptor(name="has space"),
        descriptor(key=""),
        {**descriptor(), "colour": "blue"},
        "not an object",
    ],
)
def test_malformed_descriptor_is_a_deny_not_a_crash(make_service, bad):
    verdict = make_service().spend([bad], {})
    assert (verdict.allowed, verdict.status, verdict.reason) == (False, 403, "invalid_quota_descriptor")


def test_keys_share_the_subjects_hash_tag(make_service, redis_client):
    service = make_service()
    service.spend(
        [descriptor(name="a", key="user:x{y}"), descriptor(name="b", key="user:x{y}", algorithm="calendar_month")], {}
    )
    keys = sorted(k.decode() for k in redis_client.scan_iter(match="lucid:q:*"))
    assert len(keys) == 3  # a bucket, a month counter and the index
    assert all(k.startswith("lucid:q:{user:x%7By%7D}:") for k in keys)
    from redis.crc import key_slot

    assert len({key_slot(k.encode()) for k in keys}) == 1


def test_two_subjects_in_one_request_are_all_or_nothing(make_service):
    # In Cluster these are two slots: two Lua calls, the first refunded on rejection.
    service = make_service()
    alice = descriptor(name="pair", key="user:alice", limit=100, burst=100)
    ip = descriptor(name="ip", key="ip:203.0.113.7", limit=1, burst=1)
    assert service.spend([alice, ip], {}).allowed
    assert service.spend([alice, ip], {}).status == 429
    verdict = service.spend([alice], {})
    assert dict((d.name, o.remaining) for d, o in verdict.details)["pair"] == 98


def test_remembered_descriptors_are_still_validated_by_type(make_service):
    service = make_service()
    assert service.spend([descriptor(limit=1, burst=1)], {}).allowed
    # Equal to the valid list above (True == 1) but of the wrong type: still refused.
    verdict = service.spend([descriptor(limit=True, burst=1)], {})
    assert (verdict.status, verdict.reason) == (403, "invalid_quota_descriptor")
