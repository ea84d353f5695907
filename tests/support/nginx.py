"""A real nginx for tests, on the config parts the benchmark uses (bench/configs.py).

`forward_auth_http` is the documented way to put the PDP in front of a
backend: deploy/nginx/lucid-auth.conf included in a server, as a user would.
"""

import tempfile
from pathlib import Path

import pytest

from bench import configs, stack
from tests.support.processes import Server


def start_nginx(http_body: str, port: int, prefix: str = "lucid-nginx-") -> Server:
    """One nginx worker serving http_body, with its files in a folder of its own."""
    if not stack.find_nginx():
        pytest.skip("nginx not installed (scripts/bootstrap.sh installs it)")
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    return stack.start_nginx(workdir, configs.nginx_conf(workdir, http_body, workers="1", worker_connections=64), port)


def forward_auth_http(port: int, pdp_port: int, upstream_port: int, locations: str = "") -> str:
    """One server on `port`: lucid-auth.conf asks the PDP, then `location /` passes to the upstream."""
    return f"""  upstream lucid_pdp {{ server 127.0.0.1:{pdp_port}; keepalive 8; }}
  upstream backend {{ server 127.0.0.1:{upstream_port}; }}
  server {{
    listen 127.0.0.1:{port};
    include {configs.NGINX_SNIPPETS}/lucid-auth.conf;
    location / {{ proxy_pass http://backend; }}
{locations}
  }}"""
