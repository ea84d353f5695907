"""docker-compose.yml, checked statically against what the services really read and serve.

No Docker engine here: the file is parsed, its ${VAR:-default} references
resolved as compose does, and each service's environment loaded by the
service's own settings loader (pdp/config.py, proxy/config.py): a misspelt
or invalid setting fails here, not at `docker compose up`.
"""

import re
from urllib.parse import urlsplit

import pytest
import yaml

import proxy.config
from pdp.config import SETTINGS as PDP_SETTINGS
from pdp.config import load_settings
from pdp.resources.openapi import load_spec
from proxy.cli import build_route_table
from proxy.routes import DEFAULT_ROUTES_FILE

from .conftest import CHART, ROOT
from .dockerfile import parse as parse_dockerfile

COMPOSE = ROOT / "docker-compose.yml"
_REF = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
SECRET = "compose-test-secret-" + "x" * 32
TOTP_KEYS = "k1:" + "A" * 43


def interpolate(value: str, environ: dict) -> str:
    """${VAR}, ${VAR:-default}, ${VAR:?error} as compose resolves them."""

    def sub(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if environ.get(name):
            return environ[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return _REF.sub(sub, value)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def env_of(service: dict, environ=None) -> dict:
    environ = {"JWT_SECRET_KEY": SECRET, "TOTP_ENCRYPTION_KEYS": TOTP_KEYS} if environ is None else environ
    raw = service.get("environment", {})
    assert isinstance(raw, dict), "environment as a mapping"
    return {k: interpolate(str(v), environ) for k, v in raw.items()}


def test_the_four_services_of_the_seed(compose):
    assert set(compose["services"]) == {"api-gateway", "pdp", "redis", "mongodb"}
    for name, svc in compose["services"].items():
        assert svc["networks"] == ["lucid-network"], name
        assert svc["restart"] == "unless-stopped", name
    assert set(compose["networks"]) == {"lucid-network"}


def test_gateway_and_pdp_are_built_from_our_dockerfiles_as_the_chart_names_them(compose):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name, dockerfile, repo in (
        ("api-gateway", "Dockerfile.proxy", values["proxy"]["image"]["repository"]),
        ("pdp", "Dockerfile.pdp", values["pdp"]["image"]["repository"]),
    ):
        svc = compose["services"][name]
        assert svc["build"]["dockerfile"] == dockerfile
        assert (ROOT / svc["build"]["context"] / dockerfile).is_file()
        assert svc["image"].split(":")[0] == repo


def test_pdp_environment_is_real_settings_that_load(compose):
    env = env_of(compose["services"]["pdp"])
    known = {s.env for s in PDP_SETTINGS}
    assert set(env) <= known, f"not PDP settings: {set(env) - known}"
    settings = load_settings(env)
    assert settings.port == 8082 and settings.bind_host == "0.0.0.0"
    assert urlsplit(settings.redis_url).hostname == "redis"
    assert urlsplit(settings.mongodb_uri).hostname == "mongodb"


def test_pdp_secret_is_required_not_defaulted(compose):
    with pytest.raises(KeyError, match="JWT_SECRET_KEY"):
        env_of(compose["services"]["pdp"], environ={})
    with pytest.raises(KeyError, match="TOTP_ENCRYPTION_KEYS"):
        env_of(compose["services"]["pdp"], environ={"JWT_SECRET_KEY": SECRET})


def test_the_gateway_sends_sign_in_to_the_pdp(compose):
    gateway = env_of(compose["services"]["api-gateway"])
    assert urlsplit(gateway["AUTH_SERVICE_URL"]).hostname == "pdp"
    settings = load_settings(env_of(compose["services"]["pdp"]))
    assert settings.smtp_url and settings.public_base_url and settings.signup_mode == "admin"


def test_gateway_environment_is_real_settings_that_load(compose):
    env = env_of(compose["services"]["api-gateway"])
    # The proxy's settings, and the backends the shipped routes file reads (${VAR}).
    with open(DEFAULT_ROUTES_FILE) as handle:
        backends = set(re.findall(r"\$\{([A-Z_]+):-", handle.read()))
    known = {s.env for s in proxy.config.SETTINGS} | backends
    assert set(env) <= known, f"not proxy settings: {set(env) - known}"
    config = proxy.config.load(env)
    tables = build_route_table(config)[0].clusters
    assert tables["auth"].endpoints == (env["AUTH_SERVICE_URL"],)
    pdp = urlsplit(config.pdp_url)
    pdp_env = env_of(compose["services"]["pdp"])
    assert (pdp.hostname, pdp.port) == ("pdp", int(pdp_env["AUTH_PORT"]))
    published = {tuple(p.split(":")) for p in compose["services"]["api-gateway"]["ports"]}
    assert published == {(str(config.http_port),) * 2, (str(config.https_port),) * 2}


def test_only_the_gateway_is_published(compose):
    assert [n for n, s in compose["services"].items() if "ports" in s] == ["api-gateway"]


def _health_url(svc) -> str:
    test = svc["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: the distroless images have no shell"
    found = re.findall(r"http://127\.0\.0\.1:\d+/[\w/.-]*", " ".join(test))
    assert len(found) == 1, test
    return found[0]


def test_healthchecks_use_the_image_python_and_real_endpoints(compose):
    for name, dockerfile in (("api-gateway", "Dockerfile.proxy"), ("pdp", "Dockerfile.pdp")):
        svc = compose["services"][name]
        # The interpreter the healthcheck runs is the one the image's entrypoint runs.
        entrypoint = parse_dockerfile(ROOT / dockerfile)[-1].all("ENTRYPOINT")[-1].exec_form()
        assert svc["healthcheck"]["test"][1] == entrypoint[0]
    pdp = urlsplit(_health_url(compose["services"]["pdp"]))
    assert pdp.port == int(env_of(compose["services"]["pdp"])["AUTH_PORT"])
    assert pdp.path in load_spec()["paths"]  # a documented (and so routed) PDP path
    gw = urlsplit(_health_url(compose["services"]["api-gateway"]))
    config = proxy.config.load(env_of(compose["services"]["api-gateway"]))
    assert gw.port == config.http_port
    assert gw.path == "/api/v1/meta/health"  # the seed's health endpoint
    # ... which the proxy's own route table (the shipped routes, these URLs) serves itself.
    route, error = build_route_table(config)[0].match("GET", gw.path)
    assert error is None and route.meta, route
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ping" in " ".join(compose["services"]["mongodb"]["healthcheck"]["test"])


def test_start_order_waits_for_health(compose):
    services = compose["services"]
    for name, svc in services.items():
        for dep, how in svc.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in services[dep], dep
    assert set(services["pdp"]["depends_on"]) == {"redis", "mongodb"}
    assert set(services["api-gateway"]["depends_on"]) == {"pdp"}
