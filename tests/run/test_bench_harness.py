"""The bench harness reads wrk's numbers right: requests, statuses, errors.
Short real runs (1 s, a few connections) against loopback servers; no
number is asserted about speed."""

import os
import shutil

import pytest

from bench import stack
from bench.wrk_report import run_wrk

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk not installed (Debian package wrk; make bootstrap brings it)"
)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    server = stack.start_upstream(tmp_path_factory.mktemp("bench"))
    yield server
    server.stop()


def test_counts_requests_and_statuses_of_a_healthy_upstream(upstream):
    result = run_wrk(f"{upstream.url}/api/v1/sessions", 1, 4, threads=2, count_status=True)
    assert result.requests > 0
    assert result.by_status == {200: result.requests}
    assert result.errors == 0
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms


def test_counts_denied_answers_as_errors(tmp_path, upstream, pdp_server):
    front = stack.start_front_nginx(tmp_path, upstream.port, pdp_server.port)
    try:
        result = run_wrk(f"http://127.0.0.1:{front.auth_port}/api/v1/sessions", 1, 2, threads=1, count_status=True)
    finally:
        front.stop()
    assert result.requests > 0
    assert result.by_status == {401: result.requests}
    assert result.non_2xx == result.requests
    assert result.errors == result.requests


def test_refuses_to_load_anything_but_loopback():
    with pytest.raises(ValueError):
        run_wrk("http://10.0.0.1:80/", 1, 1)


def test_cycles_over_a_targets_file_of_paths_and_tokens(tmp_path, upstream, pdp_server, jwt_secret):
    from bench import workloads

    good = workloads.mint(jwt_secret, "harness-good")
    pairs = [("/api/v1/sessions", good), ("/api/v1/users/me", good), ("/api/v1/sessions", "not-a-token")]
    targets = workloads.write_wrk_targets(tmp_path / "t.tsv", pairs)
    front = stack.start_front_nginx(tmp_path, upstream.port, pdp_server.port)
    try:
        result = run_wrk(f"http://127.0.0.1:{front.auth_port}/", 1, 2, threads=1, count_status=True, targets=targets)
    finally:
        front.stop()
    assert set(result.by_status) == {200, 401}
    assert result.by_status[200] > result.by_status[401] > 0


def _remaining(header: str) -> int:
    """r= of a RateLimit header (`"name";r=<remaining>;t=<s>`)."""
    return int(header.split(";r=", 1)[1].split(";", 1)[0])


def test_grpc_chain_starts_and_answers_200_through_envoy_with_quota_spent(tmp_path, upstream, redis_server, jwt_secret):
    """Chain (g) of `make bench` as run_bench starts it: Envoy -> `pdp serve-grpc` -> the upstream,
    quotas spent in Redis on every allowed request (enterprise plan, as the bench's tokens)."""
    import contextlib

    import redis
    import requests

    from bench import run_bench, workloads

    if not stack.find_envoy():
        from tests.support.tools import require_tool

        require_tool("envoy")
    sub = "harness-grpc"
    token = workloads.mint(jwt_secret, sub)
    with contextlib.ExitStack() as running:

        def keep(server):
            running.callback(server.stop)
            return server

        chain = run_bench.start_grpc_chain(
            keep, tmp_path, redis_server.redis_url, jwt_secret, upstream.port, quotas=True, workers="1", concurrency=1
        )
        assert not chain.skipped and chain.url.startswith("http://127.0.0.1:")
        url = chain.url + workloads.HOT_PATH
        # The bench's own check: the token allowed (200), no token refused (401).
        checked = run_bench.Chain("g", "", url, enforces=True)
        run_bench.check_chain(checked, token)
        assert checked.skipped == ""

        auth = {"Authorization": f"Bearer {token}"}
        first = requests.get(url, headers=auth, timeout=5)
        assert first.status_code == 200, first.text
        assert first.json()  # the upstream's static JSON body, through Envoy
        assert first.headers["ratelimit-policy"]
        result = run_wrk(url, 1, 2, threads=1, count_status=True, headers=auth)
        assert result.requests > 0 and result.by_status == {200: result.requests}
        last = requests.get(url, headers=auth, timeout=5)
        assert last.status_code == 200
        # Every request through the chain spent quota: wrk's requests and this one.
        spent = _remaining(first.headers["ratelimit"]) - _remaining(last.headers["ratelimit"])
        assert spent >= result.requests + 1, (first.headers["ratelimit"], last.headers["ratelimit"])
        client = redis.Redis.from_url(redis_server.redis_url)
        try:
            assert client.keys(f"lucid:q:{{user:{sub}}}*"), "no quota counter in Redis"
        finally:
            client.close()


def test_cpu_split_reads_a_real_process_cpu_and_the_proxy_batch_counters():
    """bench-cpu's readings: a child that spins for 0.4 s of CPU shows about that
    much (user and system: its clock reads are syscalls), one that sleeps shows almost none, and a gone pid reads as 0."""
    import subprocess
    import sys

    from bench.cpu_split import Cpu, batch_counters, machine_cpu, process_cpu

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ninput()"
    busy = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE)
    idle = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE)
    try:
        before = machine_cpu()
        for _ in range(100):
            used = process_cpu(busy.pid)
            if used.user_s + used.system_s >= 0.35:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        busy_cpu, idle_cpu = process_cpu(busy.pid), process_cpu(idle.pid)
        assert 0.35 <= busy_cpu.user_s + busy_cpu.system_s < 5
        assert idle_cpu.user_s + idle_cpu.system_s < 0.3  # the interpreter's start only
        spent = machine_cpu() - before
        assert spent.user_s + spent.system_s > 0
    finally:
        for child in (busy, idle):
            child.communicate(b"\n", timeout=10)
    assert process_cpu(busy.pid) == Cpu()
    metrics = (
        "# TYPE lucid_proxy_pdp_batches_total counter\n"
        "lucid_proxy_pdp_batches_total 3.0\nlucid_proxy_pdp_batches_total 1.0\n"
        "lucid_proxy_pdp_batched_decisions_total 30.0\nlucid_proxy_pdp_batched_decisions_total 10.0\n"
        "lucid_proxy_pdp_batches_created 12345.0\n"
    )
    assert batch_counters(metrics) == (4.0, 40.0)


@pytest.mark.parametrize("chain, front, pdp", [("grpc", "Envoy", "PDP gRPC"), ("envoy-http", "Envoy", "PDP")])
def test_cpu_split_measures_the_envoy_chains(chain, front, pdp):
    """BENCH_CPU_CHAIN: a short real bench-cpu run through Envoy's gRPC or HTTP ext_authz
    answers 2xx only (quota spent) and splits its CPU between Envoy and the PDP."""
    import re
    import subprocess
    import sys

    if not stack.find_envoy():
        pytest.skip("envoy not installed (the `bench` extra)")
    env = {**os.environ, "BENCH_CPU_CHAIN": chain, "BENCH_WORKLOADS": "hot",
           "BENCH_SECONDS": "1", "BENCH_WARMUP_SECONDS": "0.5", "BENCH_CONNECTIONS": "4"}
    done = subprocess.run([sys.executable, "-m", "bench.cpu_split"], env=env, capture_output=True, text=True,
                          timeout=180, cwd=stack.ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"chain {chain}," in done.stdout
    assert re.search(r"one hot user: [\d,]+ 2xx req/s, 0 not 2xx", done.stdout), done.stdout
    for name in (front, pdp, "Redis"):
        row = re.search(rf"^  {re.escape(name)}\s+(\d+) ", done.stdout, re.M)
        assert row and int(row.group(1)) > 0, (name, done.stdout)


def test_cpu_split_refuses_an_unknown_chain():
    import subprocess
    import sys

    env = {**os.environ, "BENCH_CPU_CHAIN": "kong"}
    done = subprocess.run([sys.executable, "-m", "bench.cpu_split"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=stack.ROOT)
    assert done.returncode == 1
    assert done.stderr.strip() == "bench-cpu: BENCH_CPU_CHAIN: expected one of ours, grpc, envoy-http, got 'kong'"
