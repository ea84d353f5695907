"""Envoy 1.40's HTTP ext_authz filter against `pdp serve`'s /v1/ext-authz (real
processes), with the config bench/configs.py `envoy_conf` writes: the faster of
Envoy's two ways into our PDP (docs/pdp.md), so the one users copy."""
import uuid

import pytest

from bench import stack
from tests.support.hostile_paths import assert_upstream_got_only_what_was_judged, load_corpus, raw_get
from tests.support.tools import require_tool


@pytest.fixture(scope="module")
def envoy(tmp_path_factory, logging_pdp, echo_upstream):
    if not stack.find_envoy():
        require_tool("envoy")
    server = stack.start_envoy(tmp_path_factory.mktemp("envoy"), echo_upstream.port, logging_pdp.port, concurrency=1)
    yield server
    server.stop()


@pytest.mark.parametrize("target,expected", load_corpus())
def test_hostile_paths_reach_the_upstream_only_as_judged(envoy, logging_pdp, mint, target, expected):
    """Without normalize_path Envoy asked /v1/ext-authz with the raw target,
    which the PDP judged normalized, and sent the upstream the raw one: an
    upstream that does not resolve `%2e%2e` or `//` the same way would route
    `/admin/%2e%2e/public` (judged as /public) to its /admin handler."""
    token = "Bearer " + mint(f"adm{uuid.uuid4().hex[:12]}", roles=("admin",), mfa=True)
    status, body = raw_get(envoy.port, target, token)
    assert_upstream_got_only_what_was_judged(status, body, logging_pdp.output(), target, expected)
