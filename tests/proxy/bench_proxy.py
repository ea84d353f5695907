"""`make bench-proxy`: req/s and p50/p99 of the proxy + PDP chain, measured with wrk.

Starts real redis-server, the real PDP (gunicorn, tests/proxy/policies), nginx
serving a static JSON body as the upstream (never the bottleneck), and the
proxy; then runs wrk briefly against: the upstream directly, the proxy in
front of it with a valid JWT (every request asks the PDP), and the same with
cacheable verdicts (the fast path), then that fast path to the upstream over
verified HTTPS (nginx with a certificate of a CA made here) and with JSON
field redaction of the answer. A benchmark, not a test: it prints numbers.

Env: BENCH_SECONDS (5), BENCH_CONNECTIONS (64), BENCH_WORKERS (proxy and PDP workers, 2).
"""

import os
import re
import secrets
import shutil
import subprocess
import tempfile

from pdp.authn.tokens import mint_access_token
from tests.conftest import start_pdp
from tests.proxy.proxy_helpers import get, start_proxy
from tests.support.ports import free_port
from tests.support.processes import Server, children
from tests.support.redis_server import start_redis

HERE = os.path.dirname(os.path.abspath(__file__))
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{{"service":"static","ok":true}}'; }}
  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key};
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{{"service":"static-tls","ok":true}}'; }}
  }}
}}
"""


def start_nginx():
    """nginx on .port (HTTP) and .tls_port (HTTPS, certificate of the CA at .ca_file)."""
    from tests.support.certs import CertAuthority

    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    directory = tempfile.mkdtemp(prefix="lucid-bench-nginx-")
    port, tls_port = free_port(), free_port()
    ca = CertAuthority(os.path.join(directory, "pki"), "bench CA")
    cert, key = ca.issue("localhost", dns=("localhost",), ips=("127.0.0.1",))
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as handle:
        handle.write(NGINX_CONF.format(dir=directory, port=port, tls_port=tls_port, cert=cert, key=key))
    server = Server([binary, "-c", conf, "-p", directory], port)
    server.tls_port, server.ca_file = tls_port, str(ca.cert_path)
    return server


def wrk(url, seconds, connections, headers=()):
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for header in headers:
        argv += ["-H", header]
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return rps, p50, p99, int(errors.group(1)) if errors else 0, socket_errors.group(1) if socket_errors else "none"


def worker_peak_rss_kb(master_pid):
    peaks = []
    for pid in children(master_pid):
        with open(f"/proc/{pid}/status") as handle:
            peaks += [int(line.split()[1]) for line in handle if line.startswith("VmHWM:")]
    return peaks


def main():
    seconds = int(os.environ.get("BENCH_SECONDS", "5"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "64"))
    workers = int(os.environ.get("BENCH_WORKERS", "2"))
    secret = secrets.token_hex(32)
    token, _ = mint_access_token(secret, "HS256", sub="bench", roles=["user"], lifetime_s=3600)
    redis = start_redis()
    nginx = start_nginx()
    pdp = start_pdp(
        {
            "JWT_SECRET_KEY": secret,
            "REDIS_URL": redis.redis_url,
            "POLICY_DIR": os.path.join(HERE, "policies"),
            "DECISION_LOG": "off",
            "DECISION_HEADER_NAMES": "x-user-id,x-user-roles,x-lucid-subject,ratelimit*,retry-after,"
            "www-authenticate,allow",
        },
        workers=workers,
    )
    routes = f"""
clusters:
  app: {{endpoints: ["{nginx.url}"], max_connections: 512}}
  app_tls:
    endpoints: ["https://127.0.0.1:{nginx.tls_port}"]
    max_connections: 512
    tls: {{ca_file: {nginx.ca_file}}}
routes:
  - {{name: meta, match: {{prefix: /api/v1/meta}}, meta: true}}
  - {{name: tls, match: {{prefix: /cached/tls}}, cluster: app_tls}}
  - {{name: redact, match: {{prefix: /cached/redact}}, cluster: app, response_body: {{redact_json: [ok]}}}}
  - {{name: app, match: {{prefix: /}}, cluster: app}}
"""
    proxy = start_proxy(
        routes=routes,
        workers=workers,
        env={"PDP_URL": pdp.url, "ACCESS_LOG": "false", "PDP_TIMEOUT_MS": os.environ.get("PDP_TIMEOUT_MS", "100")},
    )
    auth = f"Authorization: Bearer {token}"
    try:
        # Warm-up: a PDP worker's first decisions (Redis connect, first evaluation) can miss a 100 ms deadline.
        warm = [get(proxy.port, "/app/x", headers={"Authorization": f"Bearer {token}"}).status for _ in range(20)]
        assert 200 in warm, warm
        rows = [
            ("upstream (nginx static) directly", wrk(nginx.url + "/app/x", seconds, connections)),
            ("proxy + PDP, valid JWT", wrk(f"{proxy.url}/app/x", seconds, connections, [auth])),
            ("proxy + cached verdicts", wrk(f"{proxy.url}/cached/x", seconds, connections, [auth])),
            ("  the same, HTTPS upstream (verified)", wrk(f"{proxy.url}/cached/tls/x", seconds, connections, [auth])),
            ("  the same, JSON field redaction", wrk(f"{proxy.url}/cached/redact/x", seconds, connections, [auth])),
            (
                "PDP /v1/forward-auth alone",
                wrk(
                    f"{pdp.url}/v1/forward-auth",
                    seconds,
                    connections,
                    [auth, "X-Original-Method: GET", "X-Original-URI: /app/x"],
                ),
            ),
        ]
        print(
            f"\nwrk -t2 -c{connections} -d{seconds}s, {workers} proxy worker(s), {workers} PDP worker(s), "
            f"{os.cpu_count()} cores"
        )
        print(f"{'chain':36} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-2xx':>8}  socket errors")
        for name, (rps, p50, p99, errors, sock_errors) in rows:
            print(f"{name:36} {rps:9.0f} {p50:>9} {p99:>9} {errors:8d}  {sock_errors}")
        admin, _ = mint_access_token(secret, "HS256", sub="bench-admin", roles=["admin"], lifetime_s=3600)
        text = get(proxy.port, "/api/v1/meta/metrics", headers={"Authorization": f"Bearer {admin}"}).body.decode()
        statuses = re.findall(r'^lucid_proxy_requests_total\{route="app",status="(\d+)"\} ([\d.e+]+)$', text, re.M)
        print("proxy answers by status:", ", ".join(f"{code}: {float(n):.0f}" for code, n in sorted(statuses)))
        for kind, count in re.findall(r'^lucid_proxy_pdp_errors_total\{kind="(\w+)"\} ([\d.e+]+)$', text, re.M):
            print(f"  PDP failures ({kind}): {float(count):.0f}")
        print("proxy worker peak RSS:", ", ".join(f"{kb / 1024:.0f} MB" for kb in worker_peak_rss_kb(proxy.proc.pid)))
        openings = sum(1 for line in proxy.output().splitlines() if "circuit for" in line)
        if openings:
            print(f"  upstream circuit opened {openings} time(s)")
    finally:
        for server in (proxy, pdp, nginx, redis):
            server.stop()


if __name__ == "__main__":
    main()
