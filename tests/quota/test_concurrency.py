"""Accuracy under concurrency: 32 clients, 2 workers, one key whose bucket holds 100."""

from concurrent.futures import ThreadPoolExecutor

from .conftest import descriptor


def test_32_concurrent_clients_on_two_workers_admit_exactly_100(make_service):
    workers = [make_service(), make_service()]  # two services, two connection pools
    # 100 tokens, refill 1 per day: nothing refills during the test.
    d = [descriptor(limit=1, window_s=86400, burst=100)]

    def client(i):
        service = workers[i % 2]
        return sum(service.spend(d, {}).allowed for _ in range(10))

    with ThreadPoolExecutor(max_workers=32) as pool:
        admitted = sum(pool.map(client, range(32), timeout=60))
    assert admitted == 100


def test_concurrent_calls_share_round_trips_and_survive_script_flush(make_service, redis_client):
    service = make_service()
    runner = service._script
    batches = []
    flush = runner._flush

    def counting_flush(stack, batch):
        batches.append(len(batch))
        return flush(stack, batch)

    runner._flush = counting_flush
    d = [descriptor(limit=1, window_s=86400, burst=10_000)]
    redis_client.script_flush()  # the first batch meets NOSCRIPT and reloads

    def client(_):
        return [service.spend(d, {}) for _ in range(20)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        verdicts = [v for vs in pool.map(client, range(16), timeout=60) for v in vs]
    assert all(v.allowed and v.source == "redis" for v in verdicts)
    assert sum(batches) == 320
    remaining = service.spend(d, {}).details[0][1].remaining
    assert remaining == 10_000 - 321  # every call spent exactly once
