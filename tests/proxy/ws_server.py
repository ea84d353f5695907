"""A real WebSocket-speaking upstream: completes the RFC 6455 handshake, then echoes bytes.

Run as `python ws_server.py PORT`. The 101 answer carries X-Seen-User with the
X-User-Id the proxy forwarded, so a test can see the PDP's identity arrive.
A plain `GET /__handshakes` answers how many upgrades it has been asked for,
so a test can tell whether the proxy contacted it at all. A path ending in
`/__switch` gets a 101 whether asked for an upgrade or not: a backend that
switches protocols unasked.
"""

import base64
import hashlib
import socketserver
import sys
import threading

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HANDSHAKES = [0]
_LOCK = threading.Lock()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.request.recv(4096)
            if not data:
                return
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if head.startswith(b"GET /__handshakes "):
            count = str(_HANDSHAKES[0]).encode()
            self.request.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(count), count)
            )
            return
        if head.split(b" ")[1].endswith(b"/__switch"):
            self.request.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            )
            self.request.sendall(b"raw bytes of another protocol")
            return
        if headers.get(b"upgrade", b"").lower() != b"websocket":
            self.request.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        with _LOCK:
            _HANDSHAKES[0] += 1
        accept = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + _GUID).digest())
        self.request.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nX-Seen-User: " + headers.get(b"x-user-id", b"-") + b"\r\n\r\n"
        )
        if rest:
            self.request.sendall(rest)
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
