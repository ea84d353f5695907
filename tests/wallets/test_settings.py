"""The WALLET_* settings: a bad value stops startup with one line naming it."""

import pytest

from pdp.config import ConfigError, load_settings

BASE = {"JWT_SECRET_KEY": "s" * 32}


def test_defaults():
    s = load_settings(BASE)
    assert (s.wallet_signin, s.wallet_domain, s.wallet_uri, s.wallet_challenge_ttl_s) == (True, None, None, 300)
    assert (s.wallet_ethereum_chain_id, s.wallet_tron_chain_id) == (1, 728126428)


def test_domain_is_an_authority_lower_cased():
    assert load_settings({**BASE, "WALLET_DOMAIN": "Login.Example.COM:8443"}).wallet_domain == "login.example.com:8443"
    assert load_settings({**BASE, "WALLET_DOMAIN": "[::1]:8080"}).wallet_domain == "[::1]:8080"


@pytest.mark.parametrize(
    "env, value",
    [
        ("WALLET_DOMAIN", "https://login.example.com"),
        ("WALLET_DOMAIN", "login.example.com/path"),
        ("WALLET_DOMAIN", "a b"),
        ("WALLET_DOMAIN", "evil.example\nx"),
        ("WALLET_URI", "ftp://x"),
        ("WALLET_CHALLENGE_TTL_S", "0"),
        ("WALLET_CHALLENGE_TTL_S", "5m"),
        ("WALLET_ETHEREUM_CHAIN_ID", "-1"),
        ("WALLET_TRON_CHAIN_ID", "0x2b6653dc"),
        ("WALLET_SIGNIN_ENABLED", "maybe"),
    ],
)
def test_bad_values_name_their_setting(env, value):
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE, env: value})
    assert str(info.value).startswith(env + ":") and "\n" not in str(info.value)
