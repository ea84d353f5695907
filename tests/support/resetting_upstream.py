"""An upstream that answers a response head and then resets the connection (RST).

`python -m tests.support.resetting_upstream PORT LOGFILE`: for every request
it reads the head (and a Content-Length body), appends
`METHOD PATH X-REQUEST-ID` to LOGFILE, sends a `200 OK` head promising a
Content-Length of 1000 and no byte of it, then closes with SO_LINGER 0, so
the kernel sends a RST. The fault matrix's upstream-reset row (bench/faults.py) puts it
in place of one blockchain_core instance (ResettingUpstream, in its own
process's threads) and reads LOGFILE to see which
requests reached it (a retried POST would reach it and then another one).
"""

import socket
import struct
import sys
import threading


def serve(conn, log, lock):
    try:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0") or 0)
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        with lock:
            if not log.closed:
                log.write(f"{method} {path} {headers.get('x-request-id', '-')}\n")
                log.flush()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n")
    except OSError:
        pass
    finally:
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        conn.close()


class ResettingUpstream:
    """The same in this process, in threads: binds at once, so it can take a killed
    instance's port with no gap in which the proxy would see refused connections."""

    def __init__(self, port: int, logfile):
        self.port = port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(256)
        self._log = open(logfile, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed by stop()
            threading.Thread(target=serve, args=(conn, self._log, self._lock), daemon=True).start()

    def stop(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._thread.join(5)
        with self._lock:
            self._log.close()


def main(argv) -> int:
    ResettingUpstream(int(argv[0]), argv[1])._thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
