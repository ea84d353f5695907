"""A real SMTP server (aiosmtpd, devenv/mail_sink.py) on a free loopback port; the mails it got are files."""

import email
import email.policy
import tempfile
import time
from pathlib import Path

from .ports import free_port
from .processes import Server, python_argv


class MailSink:
    def __init__(self, port: int | None = None, folder: str | None = None):
        self.port = port or free_port()
        self.dir = Path(folder or tempfile.mkdtemp(prefix="lucid-mail-"))
        self.server = Server(
            python_argv("-m", "devenv.mail_sink", "--dir", str(self.dir), "--port", str(self.port)), self.port
        )
        self.smtp_url = f"smtp://127.0.0.1:{self.port}"

    def messages(self) -> list:
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(self.dir.glob("*.eml"))
        ]

    def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list:
        """The mails to `to`, once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages() if m["To"] == to]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.stop()


def start_smtp(port: int | None = None, folder: str | None = None) -> MailSink:
    return MailSink(port, folder)
