"""SIGHUP re-reads the routes file: a good one is served by every worker (and by
workers forked later), a bad one is refused with one log line and the last good
routes stay. Real proxy, real upstream, real signals."""

import os
import signal

import pytest

from tests.proxy.proxy_helpers import get, start_echo, start_proxy, wait_until

ROUTES = """
clusters:
  app: {{endpoints: ["{app}"]}}
routes:
  - name: app
    match: {{prefix: /}}
    cluster: app
    fail_mode: open
    response_headers: {{add: {{x-routes-version: "{version}"}}}}
"""
BAD = """
clusters:
  app: {endpoints: ["http://127.0.0.1:1"]}
routes:
  - {name: app, match: {prefix: /}, cluster: nowhere, fail_mode: open}
"""


@pytest.fixture
def upstream():
    server = start_echo("app")
    yield server
    server.stop()


def _versions(port, n=8):
    return {get(port, "/x").header("x-routes-version") for _ in range(n)}


def _worker_pids(master_pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == master_pid:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def test_sighup_reloads_routes_and_a_bad_file_keeps_the_last_good(upstream, tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.format(app=upstream.url, version="1"))
    proxy = start_proxy(workers=2, env={"ROUTES_FILE": str(routes)})
    try:
        assert _versions(proxy.port) == {"1"}
        routes.write_text(ROUTES.format(app=upstream.url, version="2"))
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: _versions(proxy.port) == {"2"})  # both workers
        assert "routes reloaded" in proxy.output()

        routes.write_text(BAD)
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: proxy.output().count("routes reload failed, keeping the previous routes") >= 3)
        assert "unknown cluster 'nowhere'" in proxy.output()
        assert _versions(proxy.port, 16) == {"2"}
        response = get(proxy.port, "/x")
        assert response.status == 200

        # A worker forked after the reloads serves the last good routes, not the start-up ones.
        victim = _worker_pids(proxy.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(_worker_pids(proxy.proc.pid)) == 2 and victim not in _worker_pids(proxy.proc.pid))
        wait_until(lambda: _versions(proxy.port, 16) == {"2"})
    finally:
        proxy.stop()
