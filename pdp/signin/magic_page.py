"""The page a magic link opens: GET shows a form and never redeems (mail
scanners fetch links); the form's POST redeems, then asks for the TOTP code
when the account has one, and shows the tokens."""

from __future__ import annotations

import html

import falcon

from ..accounts import errors as e
from .auth import verify
from .http import BadInput, read_form

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors "
    "'none'",
}
_ACTION = "/api/v1/auth/magic"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}"
        "pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:.5em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _form(fields: dict, visible: str, button: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items()
    )
    return (
        f'<form method="post" action="{_ACTION}">{hidden}{visible}'
        f'<button type="submit">{html.escape(button)}</button></form>'
    )


class MagicPage:
    def __init__(self, signin, client_info, service_name: str):
        self._signin = signin
        self._client = client_info
        self._service = service_name

    def _send(self, resp, status, title, body):
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        resp.set_headers(_HEADERS)
        resp.text = _page(title, body)

    def on_get(self, req, resp):
        token = req.get_param("token") or ""
        if not token or len(token) > 128:
            self._send(
                resp,
                falcon.HTTP_400,
                "Sign-in link incomplete",
                "<p>This link has no token. Copy the whole link from the mail.</p>",
            )
            return
        self._send(
            resp,
            falcon.HTTP_200,
            f"Sign in to {self._service}",
            "<p>Press the button to finish signing in. The link works once.</p>"
            + _form({"token": token}, "", "Sign in"),
        )

    def on_post(self, req, resp):
        try:
            doc = read_form(req, ("token", "mfa_token", "code", "recovery_code"))
            doc = {k: v for k, v in doc.items() if v != ""}
            result = verify(self._signin, doc, self._client(req), BadInput)
        except e.InvalidInput as err:
            self._send(resp, falcon.HTTP_400, "Cannot sign in", f"<p>{html.escape(str(err))}</p>")
            return
        except e.AuthFailed as err:
            self._send(
                resp,
                falcon.HTTP_401,
                "Cannot sign in",
                f"<p>{html.escape(str(err))}</p><p>reason: <code>{html.escape(err.reason)}</code></p>",
            )
            return
        except e.LockedOut as err:
            resp.set_header("Retry-After", str(err.retry_after_s))
            self._send(
                resp, falcon.HTTP_429, "Too many attempts", f"<p>{html.escape(str(err))} (in {err.retry_after_s} s)</p>"
            )
            return
        except e.AccountError as err:
            resp.set_header("Retry-After", "5")
            self._send(resp, falcon.HTTP_503, "Try again soon", f"<p>{html.escape(str(err))}</p>")
            return
        if result.get("mfa_required"):
            field = (
                '<p><label>TOTP code <input name="code" inputmode="numeric" autocomplete="one-time-code" '
                'pattern="[0-9]{6}" maxlength="6" autofocus></label></p>'
                '<p><label>or a recovery code <input name="recovery_code" maxlength="64"></label></p>'
            )
            self._send(
                resp,
                falcon.HTTP_200,
                "Second factor",
                "<p>Your account has TOTP: enter the code from your authenticator app.</p>"
                + _form({"mfa_token": result["mfa_token"]}, field, "Verify"),
            )
            return
        self._send(
            resp,
            falcon.HTTP_200,
            "Signed in",
            f"<p>Signed in (second factor: {'yes' if result['mfa'] else 'no'}). Your tokens:</p>"
            f"<p>access token (expires in {result['expires_in']} s)</p><pre "
            f'id="access_token">{html.escape(result["access_token"])}</pre>'
            f'<p>refresh token</p><pre id="refresh_token">{html.escape(result["refresh_token"])}</pre>',
        )
