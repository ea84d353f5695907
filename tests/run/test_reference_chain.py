"""The reference architecture `make bench` measures really enforces, so its
numbers are an honest anchor: Envoy -> ext_authz gRPC -> opa-envoy-plugin
(JWT checked in Rego) + global rate limit -> envoyproxy/ratelimit -> Redis.
A bad token is refused, a good one passes with its subject as the rate limit
descriptor, and both filters fail closed. Short real runs, a few requests each.

The binaries are built by `scripts/tools.sh bench` (once per machine, a few
minutes the first time), which this module calls itself."""
import os
import subprocess

import pytest
import requests

from bench import reference, stack, workloads
from tests.support.redis_server import start_redis

PATH = workloads.HOT_PATH


@pytest.fixture(scope="module")
def chain(tmp_path_factory, jwt_secret):
    try:
        reference.build_tools()
    except (subprocess.SubprocessError, OSError) as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"scripts/tools.sh bench failed: {err}")
        pytest.skip(f"scripts/tools.sh bench failed: {err}")
    missing = reference.missing_tools()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"not found: {missing}")
        pytest.skip(f"not found: {missing} (go missing?)")
    workdir = tmp_path_factory.mktemp("reference")
    redis = start_redis()
    upstream = stack.start_upstream(workdir)
    try:
        ref = reference.start_reference(workdir / "ref", upstream.port, redis.port, jwt_secret,
                                        concurrency=1)
    except Exception:
        upstream.stop()
        redis.stop()
        raise
    ref.redis, ref.upstream_server = redis, upstream
    yield ref
    ref.stop()
    upstream.stop()
    redis.stop()


def _get(chain, token=None, path=PATH):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(chain.url + path, headers=headers, timeout=10)


def test_a_good_token_passes_and_spends_its_subjects_rate_limit(chain, jwt_secret):
    good = workloads.mint(jwt_secret, "ref-alice")
    answer = _get(chain, good)
    assert answer.status_code == 200, answer.text
    assert "bench-upstream" in answer.text
    # The ratelimit filter ran on the descriptor from OPA's x-user-id header.
    assert int(answer.headers["x-ratelimit-limit"].split(",")[0]) == reference.LIMIT_PER_MINUTE
    second = _get(chain, good)
    assert int(second.headers["x-ratelimit-remaining"]) < int(answer.headers["x-ratelimit-remaining"])
    keys = subprocess.run(["redis-cli", "-p", str(chain.redis.port), "--scan"], capture_output=True,
                          text=True, timeout=10).stdout
    assert "ref-alice" in keys


@pytest.mark.parametrize("case", ["none", "wrong secret", "not a jwt", "expired", "no typ"])
def test_a_bad_token_is_refused(chain, jwt_secret, case):
    import jwt
    token = {
        "none": None,
        "wrong secret": workloads.mint("another-secret-of-at-least-32-bytes!!", "ref-mallory"),
        "not a jwt": "garbage",
        "expired": workloads.mint(jwt_secret, "ref-old", lifetime_s=-120),
        "no typ": jwt.encode({"sub": "ref-x", "roles": ["user"], "exp": 2**31}, jwt_secret, "HS256"),
    }[case]
    answer = _get(chain, token)
    assert answer.status_code == 401, answer.text


def test_a_role_the_path_does_not_accept_is_forbidden(chain, jwt_secret):
    answer = _get(chain, workloads.mint(jwt_secret, "ref-bob", roles=("guest",)))
    assert answer.status_code == 403
    assert _get(chain, workloads.mint(jwt_secret, "ref-bob"), "/api/v1/admin/x").status_code == 403


def test_both_filters_fail_closed(chain, jwt_secret, tmp_path):
    good = workloads.mint(jwt_secret, "ref-carol")
    chain.ratelimit.stop()
    try:
        assert _get(chain, good).status_code >= 500
    finally:
        chain.ratelimit = reference.start_ratelimit(chain.workdir / "ratelimit2", chain.redis.port)
    chain.restart_envoy(chain.upstream_server.port, 1)
    assert _get(chain, good).status_code == 200
    chain.opa.stop()
    assert _get(chain, good).status_code == 403  # ext_authz's answer when its service is down
