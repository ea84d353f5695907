"""The two request mixes of `make bench`, written as target files for wrk and vegeta.

hot:   one enterprise-plan user calling GET /api/v1/sessions, the case leases
       and caches help most.
mixed: TOKENS distinct users (signed tokens, enterprise plan) cycling over a
       mix of read routes, so that no per-user state stays hot for long.

Enterprise plan: its only quota is 10M a month, so every request spends quota
without ever running out (a free-plan token turns a run into 429s after 1,000).
"""

import time
import uuid
from pathlib import Path

import jwt

HOT_PATH = "/api/v1/sessions"
# Read routes every chain allows to a token with the role "user".
MIXED_PATHS = (
    "/api/v1/sessions",
    "/api/v1/sessions/s-{n}",
    "/api/v1/users/me",
    "/api/v1/wallets",
    "/api/v1/manifests/m-{n}",
    "/api/v1/trust/policies",
)


def mint(secret: str, sub: str, roles=("user",), plan: str = "enterprise", lifetime_s: int = 3600) -> str:
    """An access token as the PDP mints them (RFC 9068 typ), HS256."""
    now = int(time.time())
    claims = {
        "sub": sub,
        "roles": list(roles),
        "plan": plan,
        "mfa": True,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "at+jwt"})


def targets(secret: str, workload: str, tokens: int) -> list[tuple[str, str]]:
    """(path, token) pairs: one for hot, `tokens` for mixed."""
    if workload == "hot":
        return [(HOT_PATH, mint(secret, "bench-hot"))]
    out = []
    for n in range(tokens):
        path = MIXED_PATHS[n % len(MIXED_PATHS)].format(n=n)
        out.append((path, mint(secret, f"bench-{n:05d}")))
    return out


def write_wrk_targets(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """One "path<TAB>token" line per target, read by bench/report.lua."""
    path.write_text("".join(f"{p}\t{t}\n" for p, t in pairs))
    return path


def write_vegeta_targets(path: Path, base_url: str, pairs: list[tuple[str, str]]) -> Path:
    """vegeta's http format: a request line, its headers, a blank line."""
    path.write_text("".join(f"GET {base_url}{p}\nAuthorization: Bearer {t}\n\n" for p, t in pairs))
    return path
