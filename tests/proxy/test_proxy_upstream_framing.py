"""An upstream answering with both Content-Length and Transfer-Encoding (RFC 9112 6.3:
possibly response splitting): the proxy relays the chunked body, forwards no
Content-Length, and never sends another request on that connection. A real
proxy, and a raw-socket upstream that counts what each connection carried."""

import socket
import threading

import pytest

from tests.proxy.proxy_helpers import get, start_proxy

ROUTES = """
clusters:
  hostile: {{endpoints: ["http://127.0.0.1:{port}"]}}
routes:
  - {{name: hostile, match: {{prefix: /}}, cluster: hostile, fail_mode: open}}
"""
# Content-Length 3 against a 5-byte chunked body: a hop framing it by length reads
# "5\r\n" as the body and the rest as the start of the next response.
BOTH = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
PLAIN = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class FramingUpstream:
    """Keep-alive HTTP/1.1 on raw sockets: /both answers BOTH, anything else PLAIN.
    `connections` holds, per accepted connection, the paths it carried."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            paths = []
            with self._lock:
                self.connections.append(paths)
            threading.Thread(target=self._serve, args=(conn, paths), daemon=True).start()

    def _serve(self, conn, paths):
        buf = b""
        with conn:
            conn.settimeout(10)
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")  # the proxy sends these GETs without a body
                    path = head.split(b" ", 2)[1].decode()
                    with self._lock:
                        paths.append(path)
                    conn.sendall(BOTH if path.startswith("/both") else PLAIN)
            except OSError:
                return

    def carried(self, prefix):
        """The paths starting with `prefix`, per connection that carried any."""
        with self._lock:
            return [
                [p for p in paths if p.startswith(prefix)]
                for paths in self.connections
                if any(p.startswith(prefix) for p in paths)
            ]

    def stop(self):
        self.listener.close()


@pytest.fixture(scope="module")
def hostile():
    upstream = FramingUpstream()
    proxy = start_proxy(routes=ROUTES.format(port=upstream.port))
    yield proxy, upstream
    proxy.stop()
    upstream.stop()


def test_a_plain_response_leaves_its_connection_pooled(hostile):
    # The control: the proxy does reuse this upstream's connections.
    proxy, upstream = hostile
    for i in range(3):
        response = get(proxy.port, f"/plain/{i}")
        assert (response.status, response.body) == (200, b"hello")
    assert [len(paths) for paths in upstream.carried("/plain")] == [3]


def test_content_length_with_transfer_encoding_is_relayed_chunked_and_never_reused(hostile):
    proxy, upstream = hostile
    for i in range(3):
        response = get(proxy.port, f"/both/{i}")
        assert response.status == 200
        assert response.body == b"hello"  # the chunked body, not Content-Length's 3 bytes
        assert response.header("content-length") is None
        assert response.header("transfer-encoding") == "chunked"  # the proxy's own framing
    # Each on its own upstream connection: the one that carried such a response got nothing more.
    assert upstream.carried("/both") == [["/both/0"], ["/both/1"], ["/both/2"]]
