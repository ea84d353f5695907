"""The stand-in backends echo exactly what reached them."""
import http.client
import json

import pytest

from tests.run.conftest import start_standin


@pytest.fixture(scope="module")
def standin():
    server = start_standin("session-management")
    yield server
    server.stop()


def _raw_request(port, method, target, headers=None, body=None):
    # http.client sends the target byte for byte; requests/urllib3 would
    # normalize dot segments first and hide what the stand-in really reports.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_echo_reports_service_method_raw_path_query_and_headers(standin):
    status, headers, body = _raw_request(
        standin.port, "PUT", "/api/v1/sessions/./s%2e1?a=1&a=2&b=",
        headers={"X-User-Id": "alice", "Content-Type": "application/json"}, body=b'{"k": 1}')
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    seen = json.loads(body)
    assert seen["service"] == "session-management"
    assert seen["method"] == "PUT"
    assert seen["path"] == "/api/v1/sessions/./s%2e1"   # not decoded, not normalized
    assert seen["query"] == {"a": ["1", "2"], "b": [""]}
    assert seen["headers"]["x-user-id"] == "alice"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["body_bytes"] == 8


def test_echo_stops_on_sigterm():
    server = start_standin("tron-payment")
    assert server.stop(timeout=5) == 0
