import pytest


@pytest.fixture(scope="module")
def stack():
    # Imported here: the pure wallet tests beside this need no MongoDB or SMTP.
    from tests.accounts.stack import Stack

    s = Stack(workers=2, WALLET_DOMAIN="login.gateway.example", WALLET_ETHEREUM_CHAIN_ID="11155111")
    try:
        yield s
    finally:
        s.stop()
