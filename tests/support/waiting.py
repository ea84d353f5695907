"""Polling for a condition that real processes reach in their own time."""

import time


def wait_until(predicate, timeout=10.0, interval=0.05):
    """The predicate's first truthy value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
