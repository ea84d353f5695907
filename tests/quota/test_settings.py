"""The quota settings rows: bad values stop startup with one line naming the variable."""

import subprocess

import pytest

from pdp.config import ConfigError, load_settings
from tests.support.processes import python_argv

BASE = {"JWT_SECRET_KEY": "k" * 32}


def test_quota_defaults():
    s = load_settings(BASE)
    assert (
        s.redis_timeout_ms,
        s.ratelimit_legacy_headers,
        s.quota_breaker_failures,
        s.quota_breaker_reset_ms,
        s.quota_analytics,
        s.quota_key_prefix,
    ) == (20, False, 5, 1000, True, "lucid:q:")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"QUOTA_KEY_PREFIX": "a{b}:"}, "QUOTA_KEY_PREFIX: expected"),
        ({"RATELIMIT_LEGACY_HEADERS": "maybe"}, "RATELIMIT_LEGACY_HEADERS: expected true or false"),
        ({"QUOTA_BREAKER_FAILURES": "0"}, "QUOTA_BREAKER_FAILURES: expected an integer"),
        ({"QUOTA_LEASE_TTL_S": "0"}, "QUOTA_LEASE_TTL_S: expected"),
        ({"QUOTA_LEASE_MAX_UNITS": "lots"}, "QUOTA_LEASE_MAX_UNITS: expected an integer"),
        ({"REDIS_URL": "redis+sentinel://s1:26379"}, "REDIS_URL: a Sentinel URL needs the master"),
        ({"REDIS_URL": "memcached://x"}, "REDIS_URL: unknown scheme"),
    ],
)
def test_bad_quota_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({**BASE, **env})


def test_bad_redis_url_with_a_password_is_not_echoed():
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "REDIS_URL": "redis+cluster://app:hunter2@a:nope"})
    assert "hunter2" not in str(err.value) and str(err.value).startswith("REDIS_URL:")


def test_pdp_serve_stops_with_one_clear_line_on_a_bad_redis_url():
    proc = subprocess.run(
        python_argv("-m", "pdp", "serve"),
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **BASE, "REDIS_URL": "redis+cluster://a:7000/3"},
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "REDIS_URL" in lines[0] and "only database 0" in lines[0]
