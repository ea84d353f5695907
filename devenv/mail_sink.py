"""A real SMTP server (aiosmtpd) that keeps every message it gets as a file.

`make run` and the tests use it in place of a mail provider: each message is
saved as <dir>/<UTC time>-<n>.eml (written to a temporary name, then renamed,
so a reader never sees half a message), and its path is printed on stdout.
A message to an address at reject.invalid (a reserved, never-real domain) is
refused at DATA (554), as a provider refuses a message: the tests use it.

Usage: python -m devenv.mail_sink --dir run/mail [--host 127.0.0.1] [--port 8025]
"""

import argparse
import datetime as dt
import itertools
import os
import signal
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller

# A sign-in mail is a few kB; anything far larger is not ours.
_MAX_MESSAGE_BYTES = 1024 * 1024


class SaveToDir:
    def __init__(self, folder: Path):
        self._folder = folder
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        if any(rcpt.lower().endswith("@reject.invalid") for rcpt in envelope.rcpt_tos):
            return "554 Message refused (reject.invalid)"
        with self._lock:
            n = next(self._counter)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self._folder / f"{stamp}-{n:04d}.eml"
        tmp = path.with_suffix(".tmp")
        header = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        tmp.write_bytes(header.encode() + envelope.original_content)
        os.replace(tmp, path)
        print(f"mail to {', '.join(envelope.rcpt_tos)} saved as {path}", flush=True)
        return "250 Message accepted for delivery"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.mail_sink")
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        SaveToDir(args.dir), hostname=args.host, port=args.port, data_size_limit=_MAX_MESSAGE_BYTES, ready_timeout=10
    )
    controller.start()
    print(f"mail sink listening on {args.host}:{args.port}, saving to {args.dir}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
