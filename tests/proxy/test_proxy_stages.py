"""gateway.py's docstring names the request's stages, and they are the Gateway's stage methods."""

import inspect
import re

from proxy import gateway
from proxy.gateway import Gateway


def test_the_docstring_names_exactly_the_stages_that_exist():
    named = re.findall(r"^\d+\. `(\w+)`", gateway.__doc__, re.M)
    public = {
        name for name, member in inspect.getmembers(Gateway) if not name.startswith("_") and inspect.isfunction(member)
    }
    assert named == ["read_request", "admit", "route", "decide", "answer_meta", "forward", "log_access"]
    # Every public method is a stage, but the connection loop that runs them and the
    # SIGHUP hook that swaps the route table between requests.
    assert set(named) == public - {"serve_connection", "swap_routes"}
