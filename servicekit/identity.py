"""The identity headers: what the PDP tells the upstream about the caller.

Only the PDP's decision may set them, so every gateway in front of an upstream
(our proxy, Envoy over gRPC or HTTP ext_authz, nginx auth_request) removes a
client's own copies first. Declared once here; the proxy, the PDP's gRPC
answers and the generated Envoy and nginx configs all read this list (and a
test holds deploy/nginx's hand-written snippets to it).
"""

IDENTITY_HEADERS = frozenset(
    ("x-user-id", "x-user-roles", "x-user-plan", "x-user-mfa", "x-user-sub", "x-user-email", "x-auth-subject")
)


def is_identity_header(name: str) -> bool:
    """A lower-case header name only the PDP may set: the list, and any other x-user-*."""
    return name in IDENTITY_HEADERS or name.startswith("x-user-")
