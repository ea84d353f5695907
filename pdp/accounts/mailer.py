"""Mailer: sends the sign-in mails over SMTP (smtplib).

SMTP_URL forms: ``smtp://[user:pass@]host:port`` (plain, STARTTLS when the
server offers it), ``smtp+starttls://...`` (STARTTLS required) and
``smtps://...`` (TLS from the first byte). Links in mails are built from
PUBLIC_BASE_URL by the caller, never from a request's Host header.
"""

from __future__ import annotations

import smtplib
import ssl
import urllib.parse
from email.message import EmailMessage
from email.utils import make_msgid

from .errors import MailUnavailable

_SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


def parse_smtp_url(raw: str) -> dict:
    """Raises ValueError with a message that never echoes a password."""
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in _SCHEMES:
        raise ValueError("expected smtp://, smtp+starttls:// or smtps://host:port")
    try:
        port = parts.port or _SCHEMES[parts.scheme]
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("expected a host")
    return {
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": port,
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": urllib.parse.unquote(parts.password) if parts.password else None,
    }


def _transfer_encoding(body: str) -> str:
    return "7bit" if body.isascii() and all(len(line) < 990 for line in body.splitlines()) else "8bit"


class Mailer:
    def __init__(self, smtp_url: str, sender: str, timeout_s: float):
        self._target = parse_smtp_url(smtp_url)
        self._sender = sender
        self._timeout = timeout_s

    def _connect(self, timeout_s: float | None = None) -> smtplib.SMTP:
        t = self._target
        timeout = timeout_s or self._timeout
        if t["scheme"] == "smtps":
            conn = smtplib.SMTP_SSL(t["host"], t["port"], timeout=timeout, context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(t["host"], t["port"], timeout=timeout)
            conn.ehlo()
            if t["scheme"] == "smtp+starttls" or conn.has_extn("starttls"):
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
        if t["username"]:
            conn.login(t["username"], t["password"] or "")
        return conn

    def send(self, to: str, subject: str, text: str, html: str | None = None) -> str:
        """Sends one message; returns its Message-ID. Raises MailUnavailable."""
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="lucid-gateway")
        # No quoted-printable: the link must survive `grep` on a saved .eml
        # (make run's run/mail/) and copy-paste from a plain-text reader.
        msg.set_content(text, cte=_transfer_encoding(text))
        if html:
            msg.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
        try:
            with self._connect() as conn:
                conn.send_message(msg)
        except (OSError, smtplib.SMTPException) as err:
            raise MailUnavailable(f"SMTP unavailable ({err.__class__.__name__})") from None
        return msg["Message-ID"]

    def rehearse(self, to: str) -> None:
        """Everything of send() but the message: MAIL, RCPT, then RSET.

        Login for an unknown address does this, so that it costs about what a
        real mail costs (no timing tells which addresses have accounts) and
        fails the same way while the SMTP server is down. Raises MailUnavailable."""
        try:
            with self._connect() as conn:
                code, _ = conn.mail(self._sender_address())
                if code == 250:
                    conn.rcpt(to)
                conn.rset()
        except (OSError, smtplib.SMTPException) as err:
            raise MailUnavailable(f"SMTP unavailable ({err.__class__.__name__})") from None

    def _sender_address(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self._sender)[1] or self._sender

    def probe(self, timeout_s: float | None = None) -> bool:
        """True when the server greets and answers NOOP (readiness, and the
        unknown-address path of login)."""
        try:
            with self._connect(timeout_s) as conn:
                return conn.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False
