"""Settings: seed variable names, validated at start with one clear line."""

import subprocess
import sys

import pytest

from pdp.config import ConfigError, load_settings

GOOD_SECRET = "x" * 40


def test_defaults_follow_the_seed():
    s = load_settings({"JWT_SECRET_KEY": GOOD_SECRET})
    assert s.port == 8082
    assert s.jwt_algorithms == ("HS256",)
    assert s.rate_limit_per_minute == 100 and s.rate_limit_burst == 200 and s.rate_limit_enabled
    assert s.engine == "wasm"
    assert s.reauth_max_age_s == 600


def test_the_retired_embedded_engine_is_one_clear_line():
    with pytest.raises(ConfigError) as err:
        load_settings({"JWT_SECRET_KEY": GOOD_SECRET, "PDP_ENGINE": "embedded"})
    assert str(err.value).startswith("PDP_ENGINE: the embedded engine (regopy) was retired")
    assert "use wasm" in str(err.value) and "\n" not in str(err.value)


def test_decision_header_names_take_prefixes():
    s = load_settings({"JWT_SECRET_KEY": GOOD_SECRET, "DECISION_HEADER_NAMES": "X-User-Id, ratelimit*"})
    assert s.decision_header_names == ("x-user-id", "ratelimit*")


@pytest.mark.parametrize(
    "env,named",
    [
        ({"AUTH_PORT": "eighty"}, "AUTH_PORT"),
        ({"AUTH_PORT": "70000"}, "AUTH_PORT"),
        ({"PDP_ENGINE": "regopy"}, "PDP_ENGINE"),
        ({"PDP_ENGINE": "embedded"}, "PDP_ENGINE"),
        ({"DECISION_HEADER_NAMES": "x-user-id,bad name"}, "DECISION_HEADER_NAMES"),
        ({"DECISION_HEADER_NAMES": "x-user-id,transfer-encoding"}, "DECISION_HEADER_NAMES"),
        ({"DECISION_HEADER_NAMES": "x-user-id,content-*"}, "DECISION_HEADER_NAMES"),
        ({"DECISION_HEADER_NAMES": "x-user-id,h*"}, "DECISION_HEADER_NAMES"),
        ({"RATE_LIMIT_ENABLED": "maybe"}, "RATE_LIMIT_ENABLED"),
        ({"JWT_ALGORITHM": "none"}, "JWT_ALGORITHM"),
        ({"JWT_ALGORITHM": "HS256,RS256"}, "JWT_ALGORITHM"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"DECISION_LOG": "2"}, "DECISION_LOG"),
        ({"JWT_ALGORITHM": "RS256", "JWKS_URL": "issuer.test/jwks.json"}, "JWKS_URL"),
        ({"REAUTH_MAX_AGE_S": "0"}, "REAUTH_MAX_AGE_S"),
        ({"REAUTH_MAX_AGE_S": "10m"}, "REAUTH_MAX_AGE_S"),
    ],
)
def test_bad_value_names_the_variable(env, named):
    with pytest.raises(ConfigError) as err:
        load_settings({"JWT_SECRET_KEY": GOOD_SECRET, **env})
    assert str(err.value).startswith(named + ":")


def test_secret_is_required_and_strong():
    with pytest.raises(ConfigError, match="^JWT_SECRET_KEY: required"):
        load_settings({})
    with pytest.raises(ConfigError, match="^JWT_SECRET_KEY: too short"):
        load_settings({"JWT_SECRET_KEY": "your-secret-key"})  # the seed's placeholder


def test_asymmetric_algorithms_need_a_key():
    with pytest.raises(ConfigError, match="^JWT_PUBLIC_KEY"):
        load_settings({"JWT_ALGORITHM": "RS256"})


def test_serve_refuses_bad_setting_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "pdp", "serve"],
        env={"AUTH_PORT": "x", "JWT_SECRET_KEY": GOOD_SECRET, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "AUTH_PORT" in lines[0]


def test_serve_refuses_broken_policy_with_file_and_line(tmp_path):
    (tmp_path / "bad.rego").write_text('package gateway\n\ndecision := {\n  "allow": \n}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pdp", "serve"],
        env={"JWT_SECRET_KEY": GOOD_SECRET, "POLICY_DIR": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "POLICY_DIR" in lines[0] and "bad.rego:" in lines[0], proc.stderr


def test_secret_never_printed_in_errors():
    with pytest.raises(ConfigError) as err:
        load_settings({"JWT_SECRET_KEY": "short-but-secret"})
    assert "short-but-secret" not in str(err.value)
