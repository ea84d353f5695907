"""deploy/nginx/lucid-auth.conf with a real nginx, the real PDP on the shipped
policies and a real upstream: no client-sent identity header reaches the backend."""

import re
from pathlib import Path

import pytest
import requests

from bench import configs
from servicekit.identity import IDENTITY_HEADERS
from tests.conftest import SHIPPED_POLICIES
from tests.quota.pdp_server import start_pdp, token
from tests.support.nginx import forward_auth_stack

SNIPPETS = configs.NGINX_SNIPPETS

# A location with its own proxy_set_header: the documented include keeps identity PDP-only.
_LOCATIONS = f"""        location /api/v1/meta/ {{
            proxy_set_header X-Extra seen;
            include {SNIPPETS}/lucid-upstream-headers.conf;
            proxy_pass http://backend;
        }}
"""

# Everything a client might try, in the spellings servers confuse.
SPOOFS = {
    "X-User-Id": "admin",
    "X-User-Roles": "admin",
    "X-User-Plan": "enterprise",
    "X-User-Mfa": "true",
    "X-User-Email": "victim@example.com",
    "X-User-Sub": "victim",
    "X-Auth-Subject": "victim",
    "X_User_Roles": "admin",
    "X_User_Mfa": "true",
}


@pytest.fixture(scope="module")
def nginx():
    def pdp_on_shipped_policies(redis_url):
        return start_pdp(redis_url, workers=1, POLICY_DIR=str(SHIPPED_POLICIES))

    with forward_auth_stack(pdp_on_shipped_policies, _LOCATIONS, "lucid-nginx-identity-") as server:
        yield server


def seen_by_backend(nginx, path, bearer=None):
    headers = dict(SPOOFS)
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    reply = requests.get(nginx.url + path, headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["headers"]


def identity(seen: dict) -> dict:
    return {k: v for k, v in seen.items() if k.startswith(("x-user", "x_user", "x-auth"))}


def test_a_signed_in_callers_identity_is_the_pdps_only(nginx):
    seen = seen_by_backend(nginx, "/api/v1/users/me", token("nina", roles=["user"], plan="free", mfa=False))
    assert identity(seen) == {"x-user-id": "nina", "x-user-roles": "user", "x-user-plan": "free", "x-user-mfa": "false"}


def test_an_anonymous_caller_reaches_the_backend_with_no_identity(nginx):
    assert identity(seen_by_backend(nginx, "/api/v1/chain/info")) == {}


def test_a_location_with_its_own_headers_includes_the_same_protection(nginx):
    seen = seen_by_backend(nginx, "/api/v1/meta/health")
    assert seen["x-extra"] == "seen"
    assert identity(seen) == {}


def _set_headers(path: Path) -> set:
    return {m.lower() for m in re.findall(r"^proxy_set_header\s+(\S+)\s+\$lucid_", path.read_text(), re.M)}


def test_the_snippets_cover_every_identity_header_the_pdp_can_set():
    # IDENTITY_HEADERS: the names the proxy also strips and only the PDP may set.
    assert _set_headers(SNIPPETS / "lucid-auth.conf") == set(IDENTITY_HEADERS)
    assert _set_headers(SNIPPETS / "lucid-upstream-headers.conf") == set(IDENTITY_HEADERS)
