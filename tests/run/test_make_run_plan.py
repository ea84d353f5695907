"""What `make run` (devenv/run.py) plans for the backends, read from the proxy's own routes loader.

No process is started here: a listening socket plays "your service", a free
port plays "nothing answers".
"""
import socket

from devenv import run
from tests.support.ports import free_port

_ROUTES = """
clusters:
  mine:
    endpoints: ${{BLOCKCHAIN_CORE_URL}}
  literal:
    endpoints: [http://127.0.0.1:{idle}, http://10.0.0.7:9000]
  auth:
    endpoints: http://127.0.0.1:{pdp}
routes:
  - {{name: mine, match: {{prefix: /mine}}, cluster: mine}}
  - {{name: literal, match: {{prefix: /literal}}, cluster: literal}}
  - {{name: auth, match: {{prefix: /auth}}, cluster: auth}}
"""


def test_a_stand_in_is_planned_only_where_nothing_answers_at_a_url_of_the_routes_file(tmp_path):
    with socket.socket() as yours:
        yours.bind(("127.0.0.1", 0))
        yours.listen()
        busy, idle, pdp = yours.getsockname()[1], free_port(), free_port()
        routes = tmp_path / "routes.yaml"
        routes.write_text(_ROUTES.format(idle=idle, pdp=pdp))
        env = {"ROUTES_FILE": str(routes), "BLOCKCHAIN_CORE_URL": f"http://127.0.0.1:{busy}"}
        _config, table = run.load_proxy_routes(env)
        plan = run.plan_backends(env, table, run.routes_variables(env), pdp_port=pdp)
    assert [(b.name, b.start, b.note) for b in plan] == [
        # named for the variable the URL came from, else for its cluster
        ("blockchain-core", False, f"blockchain-core: http://127.0.0.1:{busy} (answers already, used as is)"),
        ("literal-1", True, f"literal-1 :{idle}"),
        ("literal-2", False, "literal-2: http://10.0.0.7:9000 (yours, not started here)"),
        ("auth", False, f"auth: the PDP :{pdp}"),
    ]


def test_an_unset_backend_variable_gets_its_default_on_loopback(tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text("clusters:\n  a: {endpoints: '${BLOCKCHAIN_CORE_URL}'}\n"
                      "  b: {endpoints: '${MY_APP_URL:-http://my-app:3000/base}'}\n")
    variables = run.routes_variables({"ROUTES_FILE": str(routes)})
    assert variables == {"BLOCKCHAIN_CORE_URL": "", "MY_APP_URL": "http://my-app:3000/base"}
    assert run.loopback_default(variables["MY_APP_URL"]) == "http://127.0.0.1:3000/base"
    assert run.loopback_default("") is None
    # the shipped routes file: the seed's Docker hosts become loopback on the seed's ports
    shipped = run.routes_variables({})
    assert run.loopback_default(shipped["BLOCKCHAIN_CORE_URL"]) == "http://127.0.0.1:8084"
