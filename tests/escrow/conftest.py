from decimal import Decimal

import pytest

from escrow.client import TrustlessWorkClient
from tests.payments.conftest import chain, funded_user  # noqa: F401  (shared fixtures)


@pytest.fixture
def trustless_work(chain, live_server, settings) -> TrustlessWorkClient:  # noqa: F811
    """Our client against the sandbox Trustless Work the live server serves (what the services use)."""
    settings.TRUSTLESS_WORK_API_URL = live_server.url + "/sandbox/trustless-work"
    settings.OFFERHUB_PLATFORM_FEE_PERCENT = Decimal("5")
    return TrustlessWorkClient(backoff=0.01)
