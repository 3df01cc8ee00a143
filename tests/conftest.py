import pytest
from django.conf import settings
from rest_framework.test import APIClient

from offerhub.celery import app as celery_app
from offerhub.models import AuditLog
from offerhub.services import api_key_create
from tests import database_reset
from tests.asgi_live import asgi_server  # noqa: F401  (a fixture for every test)
from tests.factories import UserFactory

# The suite runs the application, the sandbox it calls over HTTP and tests' own threads in one
# process: on one bounded pool they would wait on each other (a thread holding a connection
# while its provider call, served here, waits for one), and pooled connections left idle would
# linger on a PostgreSQL other runs share. So tests take plain connections, as before the pool;
# tests/offerhub/test_database_connections.py proves the pool in servers of their own.
settings.DATABASES["default"].get("OPTIONS", {}).pop("pool", None)

# Transactional tests (live servers) end by emptying only the tables they wrote to, not by
# truncating all of them (tests/database_reset.py).
database_reset.install()


@pytest.fixture(autouse=True, scope="session")
def _celery_in_process():
    """Tests run tasks in-process (as embedded mode does) and surface their errors;
    the tests that need the real broker switch this off themselves."""
    previous = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = previous


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    """The whole suite calls from one IP and one sandbox key; rate-limit tests lower these themselves."""
    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 100_000
    settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 100_000
    settings.SANDBOX_AIRTM_RATE_LIMIT = 100_000


@pytest.fixture(autouse=True)
def _sandbox_airtm_webhooks_nowhere(settings):
    """The sandbox Airtm's webhooks go to a closed port (a fast failed delivery) unless a test
    points them at a receiver: never at whatever else listens on SITE_URL's port."""
    settings.SANDBOX_AIRTM_WEBHOOK_URL = "http://127.0.0.1:9/api/v1/webhooks/airtm"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """PBKDF2's deliberate slowness (~0.4 s a user) is for production, not for test fixtures."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _uploads_in_a_temporary_directory(settings, tmp_path):
    """Uploaded files (public media and private) go to the test's own directory, not var/."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def make_api_key(db):
    """Create an API key; returns (ApiKey, full secret)."""

    def make(scopes=("read", "write"), name="test key", marketplace_id=""):
        return api_key_create(
            name=name,
            scopes=list(scopes),
            marketplace_id=marketplace_id,
            actor_type=AuditLog.ActorType.SYSTEM,
            actor_id="tests",
        )

    return make


@pytest.fixture
def auth_client(make_api_key):
    """An APIClient authenticated with a key holding the given scopes."""

    def make(scopes=("read", "write"), **kwargs):
        api_key, secret = make_api_key(scopes=scopes, **kwargs)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        client.api_key = api_key
        return client

    return make


@pytest.fixture
def user(db):
    return UserFactory()
