"""The whole chain for the proxy's end-to-end tests: real redis-server, the real PDP
under gunicorn on tests/proxy/policies, real upstreams, and the real proxy."""

import shutil
from pathlib import Path

import pytest

from tests.conftest import start_pdp
from tests.proxy.proxy_helpers import start_echo, start_proxy
from tests.support.ports import free_port
from tests.support.processes import Server, python_argv

POLICIES = Path(__file__).parent / "policies"
WS_SERVER = str(Path(__file__).parent / "ws_server.py")

ROUTES = """
clusters:
  app: {{endpoints: ["{app1}", "{app2}"]}}
  ws: {{endpoints: ["{ws}"]}}
routes:
  - {{name: meta-public, match: {{glob: "/api/v1/meta/{{health,info,version}}"}}, meta: true, fail_mode: open}}
  - {{name: meta, match: {{prefix: /api/v1/meta}}, meta: true}}
  - {{name: ws, match: {{prefix: /ws}}, cluster: ws, websocket: true}}
  - {{name: app, match: {{prefix: /}}, cluster: app}}
"""


def policy_pdp_env(jwt_secret: str, redis_url: str, into: Path) -> dict:
    """Copies tests/proxy/policies into `into`/policies and returns the environment of
    a PDP serving that copy (a test may edit it)."""
    policy_dir = into / "policies"
    shutil.copytree(POLICIES, policy_dir)
    return {
        "JWT_SECRET_KEY": jwt_secret,
        "REDIS_URL": redis_url,
        "POLICY_DIR": str(policy_dir),
        # The test policy sets x-lucid-subject: a custom header is allowed by naming it.
        "DECISION_HEADER_NAMES": "x-user-id,x-user-roles,x-lucid-subject,ratelimit*,retry-after,www-authenticate,allow",
    }


class Stack:
    """Handles on every process of one running chain."""

    def __init__(self, pdp, proxy, upstreams, ws, policy_dir):
        self.pdp = pdp
        self.proxy = proxy
        self.upstreams = upstreams
        self.ws = ws
        self.policy_dir = policy_dir


@pytest.fixture(scope="module")
def stack(redis_server, jwt_secret, tmp_path_factory):
    env = policy_pdp_env(jwt_secret, redis_server.redis_url, tmp_path_factory.mktemp("proxy-policies"))
    policy_dir = Path(env["POLICY_DIR"])
    pdp = start_pdp(env, workers=1)
    app1, app2 = start_echo("app1"), start_echo("app2")
    ws_port = free_port()
    ws = Server(python_argv(WS_SERVER, str(ws_port)), ws_port)
    proxy = start_proxy(
        routes=ROUTES.format(app1=app1.url, app2=app2.url, ws=ws.url),
        # The proxy is told the same names, so it drops a client's own copies of them.
        env={"PDP_URL": pdp.url, "PDP_TIMEOUT_MS": "3000", "DECISION_HEADER_NAMES": env["DECISION_HEADER_NAMES"]},
    )
    yield Stack(pdp, proxy, [app1, app2], ws, policy_dir)
    for server in (proxy, ws, app1, app2, pdp):
        server.stop()
