"""The bench harness reads wrk's numbers right: requests, statuses, errors.
Short real runs (1 s, a few connections) against loopback servers; no
number is asserted about speed."""
import shutil

import pytest

from bench import stack
from bench.wrk_report import run_wrk

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk not installed (Debian package wrk; make bootstrap brings it)")


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
        result = run_wrk(f"http://127.0.0.1:{front.auth_port}/api/v1/sessions", 1, 2, threads=1,
                         count_status=True)
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
        result = run_wrk(f"http://127.0.0.1:{front.auth_port}/", 1, 2, threads=1, count_status=True,
                         targets=targets)
    finally:
        front.stop()
    assert set(result.by_status) == {200, 401}
    assert result.by_status[200] > result.by_status[401] > 0
