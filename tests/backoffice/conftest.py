import pytest
from django.contrib.auth.models import Group

from backoffice.roles import SUPPORT_AGENT
from tests.escrow.conftest import trustless_work  # noqa: F401  (shared fixtures)
from tests.factories import UserFactory
from tests.marketplace.conftest import support, writer  # noqa: F401
from tests.payments.conftest import chain, funded_user  # noqa: F401


@pytest.fixture
def agent(client):
    """A signed-in support agent: staff in the Support agent group, not a superuser."""
    user = UserFactory(is_staff=True, email="agent@offerhub.test")
    user.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    client.force_login(user)
    client.user = user
    return client
