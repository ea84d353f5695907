"""The shipped routes reproduce the seed's endpoint table; routes files are validated."""

import re

import pytest

from proxy import config as config_module
from proxy.cli import build_route_table
from proxy.routes import RoutesError, parse_routes

SEED_TABLE = [
    ("GET", "/api/v1/meta/info", "meta"),
    ("GET", "/api/v1/meta/health", "meta"),
    ("GET", "/api/v1/meta/version", "meta"),
    ("GET", "/api/v1/meta/metrics", "meta"),
    ("POST", "/api/v1/auth/login", "auth"),
    ("POST", "/api/v1/auth/verify", "auth"),
    ("POST", "/api/v1/auth/refresh", "auth"),
    ("POST", "/api/v1/auth/logout", "auth"),
    ("GET", "/api/v1/auth/status", "auth"),
    ("GET", "/api/v1/users/me", "auth"),
    ("PUT", "/api/v1/users/me", "auth"),
    ("GET", "/api/v1/users/42", "auth"),
    ("POST", "/api/v1/users", "auth"),
    ("POST", "/api/v1/sessions", "session_management"),
    ("GET", "/api/v1/sessions", "session_management"),
    ("GET", "/api/v1/sessions/s1", "session_management"),
    ("PUT", "/api/v1/sessions/s1", "session_management"),
    ("DELETE", "/api/v1/sessions/s1", "session_management"),
    ("GET", "/api/v1/manifests/m1", "session_management"),
    ("POST", "/api/v1/manifests", "session_management"),
    ("PUT", "/api/v1/manifests/m1", "session_management"),
    ("GET", "/api/v1/trust/policies", "session_management"),
    ("POST", "/api/v1/trust/policies", "session_management"),
    ("PUT", "/api/v1/trust/policies/p1", "session_management"),
    ("GET", "/api/v1/chain/info", "blockchain_core"),
    ("GET", "/api/v1/chain/blocks", "blockchain_core"),
    ("GET", "/api/v1/chain/blocks/b1", "blockchain_core"),
    ("POST", "/api/v1/chain/transactions", "blockchain_core"),
    ("GET", "/api/v1/wallets", "tron_payment"),
    ("POST", "/api/v1/wallets", "tron_payment"),
    ("GET", "/api/v1/wallets/w1", "tron_payment"),
    ("POST", "/api/v1/wallets/w1/transactions", "tron_payment"),
]


@pytest.fixture(scope="module")
def table():
    env = {
        "SESSION_MANAGEMENT_URL": "http://10.1.0.1:8085, http://10.1.0.2:8085",
        "BLOCKCHAIN_CORE_URL": "http://core:8084",
    }
    config = config_module.load(env)
    table, mode = build_route_table(config)
    assert mode == "gateway"
    return table


@pytest.mark.parametrize("method,path,target", SEED_TABLE)
def test_seed_endpoint_routes_to_its_cluster(table, method, path, target):
    route, miss = table.match(method, path)
    assert miss is None
    assert ("meta" if route.meta else route.cluster) == target


def test_backend_variables_list_several_instances(table):
    assert table.clusters["session_management"].endpoints == ("http://10.1.0.1:8085", "http://10.1.0.2:8085")
    assert table.clusters["blockchain_core"].endpoints == ("http://core:8084",)
    assert table.clusters["tron_payment"].endpoints == ("http://tron-payment:8087",)


def test_unknown_paths_and_lookalike_prefixes_have_no_route(table):
    assert table.match("GET", "/api/v1/walletsX")[0] is None
    assert table.match("GET", "/api/v2/chain/info")[0] is None
    assert table.match("DELETE", "/api/v1/meta/health") == (None, 405)


def test_sidecar_mode_has_no_routes_file():
    config = config_module.load({})
    table, mode = build_route_table(config, "http://127.0.0.1:9000")
    assert mode == "sidecar"
    assert table.match("POST", "/anything/at/all")[0].cluster == "app"
    assert table.match("GET", "/api/v1/meta/health")[0].meta


@pytest.mark.parametrize(
    "document,message",
    [
        ({"routes": []}, "non-empty list"),
        ({"clusters": {"a": {"endpoints": "http://x:1"}}, "routes": [{"match": {"prefix": "/"}}]}, "exactly one of"),
        (
            {
                "clusters": {"a": {"endpoints": "http://x:1"}},
                "routes": [{"match": {"prefix": "/", "exact": "/"}, "cluster": "a"}],
            },
            "exactly one of exact",
        ),
        (
            {"clusters": {"a": {"endpoints": "${NOPE}"}}, "routes": [{"match": {"prefix": "/"}, "cluster": "a"}]},
            "unknown variable",
        ),
        (
            {"clusters": {"a": {"endpoints": "ftp://x:1"}}, "routes": [{"match": {"prefix": "/"}, "cluster": "a"}]},
            "http:// or https:// URL",
        ),
        (
            {
                "clusters": {"a": {"endpoints": "http://x:1", "lb": "random"}},
                "routes": [{"match": {"prefix": "/"}, "cluster": "a"}],
            },
            "lb",
        ),
        (
            {
                "clusters": {"a": {"endpoints": "http://x:1", "lb": "consistent_hash"}},
                "routes": [{"match": {"prefix": "/"}, "cluster": "a"}],
            },
            "hash_on",
        ),
        (
            {
                "clusters": {"a": {"endpoints": "http://x:1"}},
                "routes": [{"match": {"prefix": "/", "methods": ["FETCH"]}, "cluster": "a"}],
            },
            "unknown",
        ),
        (
            {
                "clusters": {"a": {"endpoints": "http://x:1"}},
                "routes": [{"match": {"prefix": "/"}, "cluster": "a", "fail_mode": "maybe"}],
            },
            "fail_mode",
        ),
    ],
)
def test_invalid_routes_are_refused_with_the_place_named(document, message):
    with pytest.raises(RoutesError, match=message):
        parse_routes(document, {}, source="routes.yaml")


def test_settings_table_documents_every_variable_the_brief_names():
    # The backend URLs are no settings of the proxy's: the shipped routes file reads them (${VAR}).
    from proxy.routes import DEFAULT_ROUTES_FILE

    with open(DEFAULT_ROUTES_FILE) as handle:
        backends = set(re.findall(r"^ +endpoints: \$\{([A-Z_]+):-", handle.read(), re.M))
    assert backends == {"BLOCKCHAIN_CORE_URL", "SESSION_MANAGEMENT_URL", "AUTH_SERVICE_URL", "TRON_PAYMENT_URL"}
    names = {s.env for s in config_module.SETTINGS} | backends
    assert names >= {
        "HTTP_PORT",
        "HTTPS_PORT",
        "SSL_ENABLED",
        "SSL_CERT_PATH",
        "SSL_KEY_PATH",
        "SSL_MIN_VERSION",
        "HTTP_REDIRECT_TO_HTTPS",
        "PDP_URL",
        "PDP_TIMEOUT_MS",
        "PROXY_WORKERS",
        "ROUTES_FILE",
        "TRUSTED_PROXIES",
        "BLOCKCHAIN_CORE_URL",
        "SESSION_MANAGEMENT_URL",
        "AUTH_SERVICE_URL",
        "TRON_PAYMENT_URL",
        "MAX_HEADER_BYTES",
        "MAX_BODY_BYTES",
        "HEADER_READ_TIMEOUT_S",
        "MAX_CONNECTIONS",
        "LISTEN_HOST",
    }
    defaults = config_module.load({})
    assert (defaults.http_port, defaults.https_port, defaults.ssl_enabled, defaults.ssl_min_version) == (
        8080,
        8081,
        False,
        "1.3",
    )
    # 1 s: the deadline catches a hung PDP; load is shed before it (proxy/admission.py).
    assert (defaults.pdp_url, defaults.pdp_timeout_ms, defaults.listen_host) == (
        "http://127.0.0.1:8082",
        1000,
        "0.0.0.0",
    )
