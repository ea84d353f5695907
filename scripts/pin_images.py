"""Pins the Dockerfiles' base images by digest, read from their registries.

The Dockerfiles name exact tags (debian:13.4-slim, opa:1.22.4-static ...). A
release machine with registry access runs

    python3 scripts/pin_images.py Dockerfile.pdp Dockerfile.proxy

which asks each registry (the Registry HTTP API v2, anonymous pull token) for
the manifest digest of each `FROM image:tag` and rewrites it to
`FROM image:tag@sha256:...`. A digest is only ever written after the registry
answered with it: on any error the file is left as it was and the script exits 1.
`--check` exits 1 when a base image is not pinned yet (for a release pipeline).
`--registry HOST=URL` points a registry host at another URL (a mirror, or a test's).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

FROM = re.compile(r"^(FROM\s+(?:--platform=\S+\s+)?)(\S+)(.*)$", re.MULTILINE)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class PinError(Exception):
    pass


def split_reference(ref: str) -> tuple[str, str, str]:
    """`debian:13.4-slim` -> ("registry-1.docker.io", "library/debian", "13.4-slim")."""
    name, _, tag = ref.rpartition(":") if "/" not in ref.rsplit(":", 1)[-1] else (ref, "", "")
    if "@" in ref or not tag:
        raise PinError(f"{ref}: expected image:tag (an exact tag, not latest or a digest)")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "registry-1.docker.io", name
    if host == "registry-1.docker.io" and "/" not in repo:
        repo = "library/" + repo
    return host, repo, tag


def _bearer_token(challenge: str, repo: str, timeout: float) -> str:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if "realm" not in params:
        raise PinError(f"unexpected auth challenge: {challenge!r}")
    query = {"scope": params.get("scope", f"repository:{repo}:pull")}
    if "service" in params:
        query["service"] = params["service"]
    url = params["realm"] + "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        doc = json.load(resp)
    token = doc.get("token") or doc.get("access_token")
    if not token:
        raise PinError("the registry's token service returned no token")
    return token


def fetch_digest(ref: str, registries: dict[str, str], timeout: float = 20.0) -> str:
    host, repo, tag = split_reference(ref)
    base = registries.get(host) or registries.get(ref.split("/")[0]) or f"https://{host}"
    url = f"{base.rstrip('/')}/v2/{repo}/manifests/{tag}"
    headers = {"Accept": ACCEPT}
    for attempt in (1, 2):
        request = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                digest = resp.headers.get("Docker-Content-Digest", "")
                break
        except urllib.error.HTTPError as err:
            challenge = err.headers.get("WWW-Authenticate", "")
            if err.code == 401 and attempt == 1 and challenge.lower().startswith("bearer"):
                headers["Authorization"] = "Bearer " + _bearer_token(challenge, repo, timeout)
                continue
            raise PinError(f"{ref}: registry answered {err.code} for {url}") from None
        except (urllib.error.URLError, OSError) as err:
            raise PinError(f"{ref}: registry unreachable at {url}: {err}") from None
    if not DIGEST.match(digest):
        raise PinError(f"{ref}: the registry sent no usable Docker-Content-Digest ({digest!r})")
    return digest


def pin_text(text: str, resolve) -> tuple[str, list[str]]:
    """Returns the text with every unpinned FROM image:tag pinned, and what was pinned."""
    stages = {m.group(3).split()[-1].lower() for m in FROM.finditer(text) if " as " in m.group(3).lower()}
    pinned = []

    def replace(match):
        ref = match.group(2)
        if "@sha256:" in ref or ref.lower() in stages or ref.startswith("$"):
            return match.group(0)  # already pinned, an earlier stage, or an ARG
        digest = resolve(ref)
        pinned.append(f"{ref}@{digest}")
        return f"{match.group(1)}{ref}@{digest}{match.group(3)}"

    return FROM.sub(replace, text), pinned


def unpinned(text: str) -> list[str]:
    stages = {m.group(3).split()[-1].lower() for m in FROM.finditer(text) if " as " in m.group(3).lower()}
    return [
        m.group(2) for m in FROM.finditer(text) if "@sha256:" not in m.group(2) and m.group(2).lower() not in stages
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dockerfiles", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="only report base images without a digest")
    parser.add_argument("--registry", action="append", default=[], metavar="HOST=URL")
    args = parser.parse_args(argv)
    registries = dict(r.split("=", 1) for r in args.registry)
    if args.check:
        missing = {str(p): unpinned(p.read_text()) for p in args.dockerfiles}
        missing = {p: refs for p, refs in missing.items() if refs}
        for path, refs in missing.items():
            print(f"{path}: not pinned by digest: {', '.join(refs)}", file=sys.stderr)
        return 1 if missing else 0
    try:
        results = {p: pin_text(p.read_text(), lambda ref: fetch_digest(ref, registries)) for p in args.dockerfiles}
    except PinError as err:
        print(f"pin_images: {err}; nothing written", file=sys.stderr)
        return 1
    for path, (text, pinned) in results.items():
        path.write_text(text)
        for ref in pinned:
            print(f"{path}: {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
