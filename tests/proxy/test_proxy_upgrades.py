"""WebSocket upgrades under load: they wait their admission turn like any
request, an open tunnel holds none, and at most MAX_TUNNELS are open. Real PDP
(tests/proxy/policies), echo and WebSocket upstreams, and the proxy with one
admission slot and three tunnels."""

import base64
import os
import socket
import threading
import time
from contextlib import ExitStack

import pytest

from tests.conftest import start_pdp
from tests.proxy.conftest import WS_SERVER, policy_pdp_env
from tests.proxy.proxy_helpers import get, read_response, start_echo, start_proxy, wait_until
from tests.support.ports import free_port
from tests.support.processes import Server, python_argv

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
  ws: {{endpoints: ["{ws}"]}}
routes:
  - {{name: ws, match: {{prefix: /ws}}, cluster: ws, websocket: true}}
  - {{name: ws-off, match: {{prefix: /app/nows}}, cluster: ws}}
  - {{name: app, match: {{prefix: /}}, cluster: app}}
"""


@pytest.fixture(scope="module")
def chain(redis_server, jwt_secret, tmp_path_factory):
    env = policy_pdp_env(jwt_secret, redis_server.redis_url, tmp_path_factory.mktemp("upgrade-policies"))
    pdp = start_pdp(env, workers=1)
    app = start_echo("app")
    ws_port = free_port()
    ws = Server(python_argv(WS_SERVER, str(ws_port)), ws_port)
    # One request at a time in the pipeline, a 50 ms queue budget, three tunnels.
    proxy = start_proxy(
        routes=ROUTES.format(app=app.url, ws=ws.url),
        env={
            "PDP_URL": pdp.url,
            "PDP_TIMEOUT_MS": "3000",
            "DECISION_HEADER_NAMES": env["DECISION_HEADER_NAMES"],
            "MAX_ACTIVE_DECISIONS": "1",
            "QUEUE_BUDGET_MS": "50",
            "MAX_TUNNELS": "3",
        },
    )
    proxy.ws = ws
    yield proxy
    for server in (proxy, ws, app, pdp):
        server.stop()


def upgrade_head(token: str, target: str = "/ws/chat") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


def open_tunnel(port: int, token: str, stack: ExitStack):
    """An upgrade on a new connection (kept open by `stack`): its answer and the socket's file."""
    sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
    sock.sendall(upgrade_head(token))
    sock_file = stack.enter_context(sock.makefile("rb"))
    return read_response(sock_file), sock, sock_file


def test_an_upgrade_waits_its_admission_turn_like_any_request(chain, mint):
    # Upgrades used to skip admission: under overload, adding Upgrade headers
    # jumped the queue and sent the PDP as many questions as the client liked.
    token = mint("erin")
    slow = threading.Thread(target=get, args=(chain.port, "/app/x?delay_s=3", {"Authorization": f"Bearer {token}"}))
    slow.start()
    time.sleep(0.5)  # the slow request holds the only turn
    try:
        with ExitStack() as stack:
            response, _, _ = open_tunnel(chain.port, token, stack)
        assert response.status == 503
        assert response.header("retry-after") == "1"
        assert response.header("content-type") == "application/problem+json"
    finally:
        slow.join(20)


def test_an_open_tunnel_holds_no_admission_turn(chain, mint):
    token = mint("erin")
    with ExitStack() as stack:
        tunnels = [open_tunnel(chain.port, token, stack) for _ in range(3)]
        assert [response.status for response, _, _ in tunnels] == [101] * 3
        # Three tunnels open, one admission slot: plain requests still get through at once.
        started = time.monotonic()
        assert get(chain.port, "/app/x", {"Authorization": f"Bearer {token}"}).status == 200
        assert time.monotonic() - started < 0.9  # not after a wait for a turn (1 s)
        for _, sock, sock_file in tunnels:
            sock.sendall(b"\x81\x02hi")
            assert sock_file.read(4) == b"\x81\x02hi"


def handshakes(ws: Server) -> int:
    """How many upgrades the WebSocket upstream has been asked for."""
    return int(get(ws.port, "/__handshakes").body)


def test_an_upgrade_over_max_tunnels_is_503_before_the_upstream_is_contacted(chain, mint):
    # A tunnel's upstream connection is outside the pool and the breaker: only
    # MAX_CONNECTIONS bounded them, and each took an upstream socket of its own.
    token = mint("erin")
    with ExitStack() as stack:
        tunnels = [open_tunnel(chain.port, token, stack) for _ in range(3)]
        assert [response.status for response, _, _ in tunnels] == [101] * 3
        before = handshakes(chain.ws)
        with ExitStack() as one_more:
            refused, _, _ = open_tunnel(chain.port, token, one_more)
        assert refused.status == 503
        assert refused.header("retry-after") == "1"
        assert refused.header("content-type") == "application/problem+json"
        assert "tunnels" in refused.json()["detail"]
        assert handshakes(chain.ws) == before  # refused without a word to the upstream
        # The open ones still carry their bytes.
        _, sock, sock_file = tunnels[0]
        sock.sendall(b"\x81\x02hi")
        assert sock_file.read(4) == b"\x81\x02hi"
    # Closed tunnels give their places back.
    with ExitStack() as stack:
        reopened = wait_until(lambda: open_tunnel(chain.port, token, stack)[0].status == 101, timeout=5)
        assert reopened


def test_an_upgrade_on_a_route_without_websocket_is_relayed_as_a_plain_request(chain, mint):
    # Every route used to take upgrades unless it said otherwise, so a tunnel
    # could be opened to any backend behind any route. Now it is opt-in; on
    # other routes Upgrade and Connection are hop-by-hop and dropped.
    token = mint("erin")
    before = handshakes(chain.ws)
    with socket.create_connection(("127.0.0.1", chain.port), timeout=10) as sock:
        sock.sendall(upgrade_head(token, "/app/nows/chat"))
        response = read_response(sock.makefile("rb"))
    assert response.status == 426  # the WebSocket backend saw a plain GET
    assert handshakes(chain.ws) == before
    with socket.create_connection(("127.0.0.1", chain.port), timeout=10) as sock:
        sock.sendall(upgrade_head(token, "/app/x"))
        response = read_response(sock.makefile("rb"))
    assert response.status == 200
    seen = response.json()["headers"]
    assert "upgrade" not in seen and "upgrade" not in seen.get("connection", "").lower()


@pytest.mark.parametrize("target", ["/app/nows/__switch", "/ws/__switch"])
def test_a_101_to_a_request_that_did_not_ask_for_an_upgrade_is_a_502(chain, mint, target):
    # The proxy passed such a bare 101 on and kept both connections, the
    # upstream one back in the pool, speaking another protocol by then.
    token = mint("erin")
    with socket.create_connection(("127.0.0.1", chain.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        sock_file = sock.makefile("rb")
        response = read_response(sock_file)
        assert response.status == 502
        assert response.header("content-type") == "application/problem+json"
        # The client's connection is still plain HTTP: the next request is served.
        sock.sendall(f"GET /app/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        assert read_response(sock_file).status == 200
