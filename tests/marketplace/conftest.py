import pytest

from tests.escrow.conftest import trustless_work  # noqa: F401  (shared fixtures)
from tests.payments.conftest import chain, funded_user  # noqa: F401


@pytest.fixture
def writer(auth_client):
    """An API client whose key reads and writes (the marketplace's own)."""
    return auth_client(scopes=["read", "write"])


@pytest.fixture
def support(auth_client):
    """An API client whose key has the support scope."""
    return auth_client(scopes=["read", "support"])
