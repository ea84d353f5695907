"""The OpenAPI document (pdp/openapi.yaml) describes exactly the app's routes."""

import re

import falcon.inspect
import pytest
import requests

from pdp import __version__
from pdp.app import build_services, create_app
from pdp.config import load_settings
from pdp.resources.openapi import load_spec
from tests.accounts.stack import signin_env
from tests.conftest import FIXTURE_POLICIES
from tests.support.mongo_server import start_mongo

_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def spec_operations(spec: dict) -> set:
    return {
        (path, method.upper()) for path, item in spec["paths"].items() for method in item if method in _HTTP_METHODS
    }


def app_operations(app) -> set:
    """(path, METHOD) of every responder the resources define (falcon's own 405/OPTIONS defaults left out)."""
    ops = set()
    for route in falcon.inspect.inspect_routes(app):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {rest:path} -> {rest}
        ops |= {(path, m.method) for m in route.methods if not m.internal}
    return ops


@pytest.fixture
def full_app(redis_server, jwt_secret):
    """The app as `pdp serve` builds it, quotas and the sign-in API (a real SecantusDB) on,
    so every optional route is mounted: decisions, quotas, admin page, accounts, wallets."""
    mongo = start_mongo()
    try:
        env = signin_env(
            redis_server.redis_url,
            mongo.mongodb_uri,
            "smtp://127.0.0.1:1",
            JWT_SECRET_KEY=jwt_secret,
            POLICY_DIR=str(FIXTURE_POLICIES),
            RATE_LIMIT_ENABLED="true",
        )
        yield create_app(build_services(load_settings(env)))
    finally:
        mongo.stop()


def test_sign_in_and_wallet_routes_are_mounted_and_documented(full_app):
    """The sign-in API is part of what the spec must match (not left out as optional)."""
    app, spec = app_operations(full_app), spec_operations(load_spec())
    expected = {
        ("/api/v1/auth/login", "POST"),
        ("/api/v1/auth/verify", "POST"),
        ("/api/v1/auth/magic", "GET"),
        ("/api/v1/auth/refresh", "POST"),
        ("/api/v1/auth/logout", "POST"),
        ("/api/v1/users", "POST"),
        ("/api/v1/users/me/totp", "POST"),
        ("/api/v1/users/{user_id}/roles", "PUT"),
        ("/api/v1/auth/wallet/challenge", "POST"),
        ("/api/v1/auth/wallet/verify", "POST"),
        ("/api/v1/users/me/wallets/{address}", "DELETE"),
    }
    assert expected <= app and expected <= spec


def test_spec_paths_and_methods_are_the_apps_routes(full_app):
    spec, app = spec_operations(load_spec()), app_operations(full_app)
    assert spec - app == set(), "documented but not routed"
    assert app - spec == set(), "routed but not documented"


def test_every_operation_documents_its_responses():
    for path, item in load_spec()["paths"].items():
        for method, op in item.items():
            if method in _HTTP_METHODS:
                assert op.get("responses"), (path, method)
                assert any(code[0] in "23" for code in op["responses"]), (path, method)


def test_spec_is_served_as_json_by_the_live_pdp(pdp):
    resp = requests.get(pdp.url + "/v1/openapi.json", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == __version__
    assert "/v1/check" in doc["paths"] and doc == load_spec()
