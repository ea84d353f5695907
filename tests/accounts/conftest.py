import pytest

from .stack import Stack


@pytest.fixture(scope="module")
def stack():
    s = Stack(workers=2, REFRESH_REUSE_GRACE_S="2")
    try:
        yield s
    finally:
        s.stop()
