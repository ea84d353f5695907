"""scripts/pin_images.py writes a base image's digest only as a registry answered it.

The registry here is a real HTTP server of the test's on loopback that speaks
the part of the Registry API v2 the script uses: the bearer-token challenge
and a manifest HEAD answering Docker-Content-Digest (no registry is reachable
from this machine, and no digest may be invented).
"""

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pin_images.py"
DIGESTS = {
    f"{repo}:{tag}": "sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()
    for repo, tag in (
        ("library/debian", "13.4-slim"),
        ("openpolicyagent/opa", "1.22.4-static"),
        ("distroless/python3-debian13", "nonroot"),
    )
}


class Registry(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # the token service
        body = json.dumps({"token": "t0k"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        if self.headers.get("Authorization") != "Bearer t0k":
            self.send_response(401)
            port = self.server.server_address[1]
            self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{port}/token",service="test"')
            self.end_headers()
            return
        repo, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
        digest = DIGESTS.get(f"{repo}:{tag}")
        self.send_response(200 if digest else 404)
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()


@pytest.fixture
def registry():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_the_shipped_dockerfiles_get_every_base_image_pinned(tmp_path, registry):
    files = [shutil.copy(ROOT / name, tmp_path / name) for name in ("Dockerfile.pdp", "Dockerfile.proxy")]
    assert run("--check", *files).returncode == 1
    done = run(*files, "--registry", f"registry-1.docker.io={registry}", "--registry", f"gcr.io={registry}")
    assert done.returncode == 0, done.stderr
    pdp = Path(files[0]).read_text()
    assert f"FROM debian:13.4-slim@{DIGESTS['library/debian:13.4-slim']} AS build" in pdp
    assert f"FROM openpolicyagent/opa:1.22.4-static@{DIGESTS['openpolicyagent/opa:1.22.4-static']} AS opa" in pdp
    assert f"FROM gcr.io/distroless/python3-debian13:nonroot@{DIGESTS['distroless/python3-debian13:nonroot']}" in pdp
    assert run("--check", *files).returncode == 0
    again = run(*files, "--registry", f"registry-1.docker.io={registry}", "--registry", f"gcr.io={registry}")
    assert again.returncode == 0 and again.stdout == ""  # already pinned: nothing asked, nothing changed


def test_an_unknown_tag_writes_nothing(tmp_path, registry):
    path = tmp_path / "Dockerfile"
    original = "FROM debian:13.4-slim AS build\nFROM debian:99-nope\n"
    path.write_text(original)
    done = run(path, "--registry", f"registry-1.docker.io={registry}")
    assert done.returncode == 1 and "404" in done.stderr and "nothing written" in done.stderr
    assert path.read_text() == original


def test_an_unreachable_registry_writes_nothing(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM debian:13.4-slim\n")
    done = run(path, "--registry", "registry-1.docker.io=http://127.0.0.1:9")
    assert done.returncode == 1 and "unreachable" in done.stderr
    assert "@sha256" not in path.read_text()
