"""The proxy's access log masks the same secret query parameters the PDP strips (servicekit/secret_params.py)."""

import json
import time

from servicekit.secret_params import redact_query
from tests.pdp.test_secret_params import SECRET_QUERY, SECRETS
from tests.proxy.proxy_helpers import get, wait_until


def test_the_proxy_masks_the_same_names_in_its_access_log(stack, mint):
    response = get(
        stack.proxy.port,
        "/app/logged?" + SECRET_QUERY,
        headers={"Authorization": "Bearer " + mint("erin"), "X-Request-ID": "secret-params-0001"},
    )
    assert response.status == 200
    line = wait_until(lambda: [x for x in stack.proxy.output().splitlines() if "secret-params-0001" in x], timeout=5)[0]
    assert json.loads(line)["path"] == "/app/logged?" + redact_query(SECRET_QUERY)
    time.sleep(0.2)  # the PDP's decision line for the same request
    for secret in SECRETS:
        assert secret not in stack.proxy.output()
        assert secret not in stack.pdp.output()
