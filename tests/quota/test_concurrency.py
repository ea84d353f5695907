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
