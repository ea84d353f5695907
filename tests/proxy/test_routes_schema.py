"""The routes file is checked against one schema: each mistake is one startup line naming
the file, the key path and what was expected; ${VAR} endpoints come from the environment."""

import subprocess
import sys

import pytest

from proxy import cli
from proxy.routes import ROUTES_SCHEMA, ClusterSpec, Cors, RoutesError, parse_routes, routes_reference
from tests.support.processes import ROOT

CLUSTER = "  core:\n    endpoints: http://127.0.0.1:9\n"
ROUTE = "  - match: {prefix: /}\n    cluster: core\n"


def document(cluster_extra="", route_extra=""):
    return f"clusters:\n{CLUSTER}{cluster_extra}routes:\n{ROUTE}{route_extra}"


BAD = [
    # The typos, each silently ignored before.
    (
        document("    retry: {attemps: 5}\n"),
        "clusters.core.retry.attemps: unknown key (expected one of attempts, budget_percent, min_concurrency)",
    ),
    (document("    breakr: {open_s: 5}\n"), "clusters.core.breakr: unknown key (expected one of endpoints, lb,"),
    (document("    time_outs: {read_ms: 5}\n"), "clusters.core.time_outs: unknown key (expected one of endpoints,"),
    (document(route_extra="    fail_mod: open\n"), "routes[0].fail_mod: unknown key (expected one of name, match,"),
    # A string where a list belongs was a tuple of characters: the origin "h" was allowed.
    (
        document(route_extra='    cors: {allow_origins: "https://app.example"}\n'),
        "routes[0].cors.allow_origins: expected a non-empty list (each an origin such as https://app.example (or *)), "
        "got 'https://app.example' (a string)",
    ),
    (
        document(route_extra='    cors: {allow_origins: ["*"], allow_credentials: true}\n'),
        "routes[0].cors.allow_credentials: true needs the origins listed in allow_origins, not '*'",
    ),
    (
        document(route_extra='    cors: {allow_origins: ["https://a.example/path"]}\n'),
        "routes[0].cors.allow_origins[0]: expected an origin such as https://app.example (or *)",
    ),
    (
        document(route_extra='    cors: {allow_origins: ["https://a.example"], max_age_s: 1.5}\n'),
        "routes[0].cors.max_age_s: expected an integer from 0 to 86400, got 1.5 (a number)",
    ),
    (
        document(route_extra='    cors: {alow_origins: ["https://a.example"]}\n'),
        "routes[0].cors.alow_origins: unknown key",
    ),
    # Wrong types.
    (
        document('    timeouts: {connect_ms: "5000"}\n'),
        "clusters.core.timeouts.connect_ms: expected a number, at least 1, got '5000' (a string)",
    ),
    (
        document("    max_connections: true\n"),
        "clusters.core.max_connections: expected an integer, at least 1, got true (a boolean)",
    ),
    (
        document("    breaker: {max_pending: 2.5}\n"),
        "clusters.core.breaker.max_pending: expected an integer, at least 0, got 2.5 (a number)",
    ),
    (document("    health_check: [/health]\n"), "clusters.core.health_check: expected a mapping with the keys path,"),
    (document(route_extra='    websocket: "no"\n'), "routes[0].websocket: expected true or false, got 'no' (a string)"),
    (document(route_extra="    meta: 1\n"), "routes[0].meta: expected true or false, got 1 (a number)"),
    (
        document(route_extra="    request_headers: {remove: x-debug}\n"),
        "routes[0].request_headers.remove: expected a list (each an HTTP header name), got 'x-debug' (a string)",
    ),
    # Bad values.
    (
        document("    retry: {attempts: -1}\n"),
        "clusters.core.retry.attempts: expected an integer, at least 0, got -1 (a number)",
    ),
    (
        document("    health_check: {interval_s: 0}\n"),
        "clusters.core.health_check.interval_s: expected a number, at least 0.05, got 0 (a number)",
    ),
    (
        document("    lb: random\n"),
        "clusters.core.lb: expected one of round_robin, least_outstanding, consistent_hash, got 'random' (a string)",
    ),
    (
        document(route_extra="    fail_mode: maybe\n"),
        "routes[0].fail_mode: expected one of closed, open, got 'maybe' (a string)",
    ),
    (
        document(route_extra="    strip_prefix: api\n"),
        "routes[0].strip_prefix: expected a path starting with /, got 'api' (a string)",
    ),
    (
        document(route_extra='    request_headers: {add: {x-env: "a\\r\\nx-admin: 1"}}\n'),
        "routes[0].request_headers.add.x-env: expected a header value (text without CR, LF, NUL)",
    ),
    (
        "clusters:\n  core:\n    endpoints: [http://127.0.0.1:9, ftp://x]\nroutes:\n" + ROUTE,
        "clusters.core.endpoints: expected an http:// or https:// URL, got 'ftp://x' (a string)",
    ),
    (
        "clusters:\n  core:\n    endpoints: http://127.0.0.1:port\nroutes:\n" + ROUTE,
        "clusters.core.endpoints: expected an http:// or https:// URL, got 'http://127.0.0.1:port' (a string)",
    ),
    (
        "clusters:\n  core: {lb: round_robin}\nroutes:\n" + ROUTE,
        "clusters.core.endpoints: required (expected an http(s):// URL, a list of them, or ${VAR}",
    ),
    (
        "clusters:\n  core bad:\n    endpoints: http://127.0.0.1:9\nroutes:\n" + ROUTE,
        'clusters["core bad"]: bad key: expected a cluster name',
    ),
    (
        f"clusters:\n{CLUSTER}routes: {{match: {{prefix: /}}, cluster: core}}\n",
        "routes: expected a non-empty list (each a route",
    ),
    (f"clusters:\n{CLUSTER}", "routes: required (expected a non-empty list"),
    (f"clusters:\n{CLUSTER}route:\n{ROUTE}", "route: unknown key (expected one of clusters, routes)"),
    ("- just a list\n", "expected a mapping with 'clusters' and 'routes', got a list"),
    # PyYAML keeps the last of a key written twice: here the second timeouts would win unseen.
    (
        document("    timeouts: {connect_ms: 100}\n    timeouts: {read_ms: 100}\n"),
        "line 5: duplicate key 'timeouts' (expected each key once per mapping)",
    ),
    (f"clusters:\n{CLUSTER}routes:\n{ROUTE}routes:\n{ROUTE}", "line 7: duplicate key 'routes'"),
    ("clusters: {core: {endpoints: [http://a:1}\n", "while parsing a flow sequence in"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[e[:48] for _, e in BAD])
def test_a_mistake_stops_startup_with_one_line_naming_file_key_and_expectation(tmp_path, capsys, text, expected):
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    assert cli.main(["--check", "--routes", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"lucid-proxy: {path}: {expected}"), lines[0]


def test_the_startup_line_comes_from_the_real_command(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(document("    retry: {attemps: 5}\n"))
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "--check", "--routes", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stdout
    assert done.stderr.strip().splitlines() == [
        f"lucid-proxy: {path}: clusters.core.retry.attemps: unknown key "
        "(expected one of attempts, budget_percent, min_concurrency)"
    ]


def test_cors_origins_are_a_list_of_whole_origins():
    table = parse_routes(
        {
            "clusters": {"a": {"endpoints": "http://x:1"}},
            "routes": [{"match": {"prefix": "/"}, "cluster": "a", "cors": {"allow_origins": ["https://app.example"]}}],
        },
        {},
    )
    cors = table.routes[0].cors
    assert cors.allow_origins == ("https://app.example",)
    assert cors.allows("https://app.example") and not cors.allows("h")
    assert (cors.allow_methods, cors.max_age_s) == (Cors(allow_origins=()).allow_methods, 600)


def test_defaults_come_from_the_dataclasses():
    table = parse_routes(
        {
            "clusters": {"a": {"endpoints": "http://x:1", "breaker": None, "retry": {}}},
            "routes": [{"match": {"prefix": "/"}, "cluster": "a"}],
        },
        {},
    )
    assert table.clusters["a"] == ClusterSpec(name="a", endpoints=("http://x:1",))
    route = table.routes[0]
    assert (route.fail_open, route.websocket, route.timeouts, route.name) == (False, False, None, "route0")


def test_a_route_without_methods_matches_neither_trace_nor_connect():
    table = parse_routes(
        {
            "clusters": {"a": {"endpoints": "http://x:1"}},
            "routes": [
                {"name": "debug", "match": {"prefix": "/debug", "methods": ["TRACE"]}, "cluster": "a"},
                {"name": "any", "match": {"prefix": "/"}, "cluster": "a"},
            ],
        },
        {},
    )
    assert table.match("DELETE", "/x")[0].name == "any"
    assert table.match("TRACE", "/x") == (None, 405)
    assert table.match("CONNECT", "/x") == (None, 405)
    assert table.match("TRACE", "/debug/x")[0].name == "debug"


def test_milliseconds_become_seconds():
    table = parse_routes(
        {
            "clusters": {
                "a": {"endpoints": "http://x:1", "timeouts": {"connect_ms": 250}, "health_check": {"timeout_ms": 500}}
            },
            "routes": [{"match": {"prefix": "/"}, "cluster": "a", "timeouts": {"read_ms": 1500}}],
        },
        {},
    )
    spec = table.clusters["a"]
    assert (spec.timeouts.connect_s, spec.timeouts.read_s, spec.health_check.timeout_s) == (0.25, 30.0, 0.5)
    assert table.routes[0].timeouts.read_s == 1.5


# -- ${VAR} ------------------------------------------------------------------------------


def one_cluster(endpoints, variables):
    return (
        parse_routes(
            {"clusters": {"core": {"endpoints": endpoints}}, "routes": [{"match": {"prefix": "/"}, "cluster": "core"}]},
            variables,
            source="routes.yaml",
        )
        .clusters["core"]
        .endpoints
    )


def test_a_variable_lists_one_or_several_instances():
    assert one_cluster("${CORE_URL}", {"CORE_URL": "http://a:1"}) == ("http://a:1",)
    assert one_cluster("${CORE_URL}", {"CORE_URL": " http://a:1/, https://b:2 "}) == ("http://a:1", "https://b:2")
    assert one_cluster(["${CORE_URL}", "http://c:3"], {"CORE_URL": "http://a:1"}) == ("http://a:1", "http://c:3")
    assert one_cluster("http://${CORE_HOST}:8084", {"CORE_HOST": "core.internal"}) == ("http://core.internal:8084",)


def test_a_default_applies_when_the_variable_is_unset_or_empty():
    assert one_cluster("${CORE_URL:-http://core:8084}", {}) == ("http://core:8084",)
    assert one_cluster("${CORE_URL:-http://core:8084}", {"CORE_URL": ""}) == ("http://core:8084",)
    assert one_cluster("${CORE_URL:-http://core:8084}", {"CORE_URL": "http://other:1"}) == ("http://other:1",)


@pytest.mark.parametrize(
    "endpoints,variables,expected",
    [
        (
            "${CORE_URL}",
            {},
            "routes.yaml: clusters.core.endpoints: unknown variable ${CORE_URL}: not set in the "
            "environment (expected comma-separated http(s):// URLs; or write ${CORE_URL:-default})",
        ),
        ("${CORE_URL}", {"CORE_URL": "  "}, "routes.yaml: clusters.core.endpoints: unknown variable ${CORE_URL}"),
        (
            "${CORE_URL}",
            {"CORE_URL": "core:8084"},
            "routes.yaml: clusters.core.endpoints: expected an http:// or "
            "https:// URL, got 'core:8084' (a string) (from ${CORE_URL})",
        ),
        (
            "${CORE_URL}",
            {"CORE_URL": "http://a:1,ftp://b"},
            "routes.yaml: clusters.core.endpoints: expected an http:// or https:// URL, got 'ftp://b' (a string)",
        ),
        ("${CORE_URL}", {"CORE_URL": "ftp://user:hunter2@b"}, "(not shown: it may hold a password) (from ${CORE_URL})"),
        ("${core-url}", {}, "routes.yaml: clusters.core.endpoints: malformed variable in '${core-url}'"),
    ],
)
def test_a_bad_or_missing_variable_is_one_line(endpoints, variables, expected):
    with pytest.raises(RoutesError) as caught:
        one_cluster(endpoints, variables)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_proxy_reads_backend_urls_from_its_environment(tmp_path, capsys, monkeypatch):
    path = tmp_path / "routes.yaml"
    path.write_text(
        'clusters:\n  orders: {endpoints: "${ORDERS_URL}"}\nroutes:\n  - {match: {prefix: /}, cluster: orders}\n'
    )
    monkeypatch.delenv("ORDERS_URL", raising=False)
    assert cli.main(["--check", "--routes", str(path)]) == 2
    assert "clusters.orders.endpoints: unknown variable ${ORDERS_URL}" in capsys.readouterr().err
    monkeypatch.setenv("ORDERS_URL", "http://10.0.0.1:8080,http://10.0.0.2:8080")
    assert cli.main(["--check", "--routes", str(path)]) == 0
    config = cli.config_module.load()
    table, _ = cli.build_route_table(config.replace(routes_file=str(path)))
    assert table.clusters["orders"].endpoints == ("http://10.0.0.1:8080", "http://10.0.0.2:8080")


def test_the_shipped_routes_name_the_seed_backends_with_their_defaults():
    table, _ = cli.build_route_table(cli.config_module.load({}))
    assert {name: spec.endpoints for name, spec in table.clusters.items()} == {
        "auth": ("http://auth-service:8086",),
        "session_management": ("http://session-management:8085",),
        "blockchain_core": ("http://blockchain-core:8084",),
        "tron_payment": ("http://tron-payment:8087",),
    }


def test_no_backend_is_named_in_the_proxy_code():
    # Only prose may name them (the settings table points at the routes file).
    for name in ("config.py", "cli.py", "routes.py"):
        code = [
            line
            for line in (ROOT / "proxy" / name).read_text().splitlines()
            if not line.lstrip().startswith(('"', "#"))
        ]
        assert not [line for line in code if "BLOCKCHAIN_CORE" in line or "blockchain_core" in line], name


def test_docs_carry_the_routes_reference_as_generated():
    assert routes_reference() in (ROOT / "docs" / "proxy.md").read_text()
    documented = {row[0] for row in ROUTES_SCHEMA.reference()}
    assert {"clusters.NAME.retry.attempts", "routes[].cors.allow_origins", "routes[].fail_mode"} <= documented
