"""The authentication backend (marketplace.auth_backends): Django's ModelBackend, whose read of
the logged-in member is one prepared statement. Logging in, sessions that name Django's own
ModelBackend, and the session hash check stay Django's."""

from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, load_backend, user_login_failed
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from marketplace.auth_backends import PreparedModelBackend, _user_read
from marketplace.models import User
from marketplace.models import VisitorSession as Session
from marketplace.sessions import SessionStore, _session_read
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

BACKEND = "marketplace.auth_backends.PreparedModelBackend"
DJANGO_BACKEND = "django.contrib.auth.backends.ModelBackend"


class CountingHasher(MD5PasswordHasher):
    """The tests' fast hasher, counting the passwords it hashes."""

    algorithm = "counted_md5"
    calls = 0

    def encode(self, password, salt):
        CountingHasher.calls += 1
        return super().encode(password, salt)


def test_it_comes_first_and_django_s_backend_stays_for_the_sessions_naming_it():
    assert settings.AUTHENTICATION_BACKENDS == [BACKEND, DJANGO_BACKEND]


def read_by_backend(user):
    return lambda: PreparedModelBackend().get_user(user.pk)


def read_with_session(user):
    """The member as their session's read brings it (marketplace.sessions), once logged in."""
    client = Client()
    client.force_login(user)
    store = SessionStore(client.session.session_key)
    return lambda: store.load() and store.member


@pytest.mark.parametrize("member_read", [read_by_backend, read_with_session])
def test_the_user_read_is_the_orm_s_on_every_concrete_field(member_read, django_assert_num_queries):
    user = UserFactory(
        metadata={"plan": "pro", "tags": ["a", "b"], "n": 1.5, "nested": {"x": None}},
        external_user_id="ext-1",
        marketplace_id="mkt",
        airtm_email="me@airtm.test",
        airtm_linked_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        last_login=datetime(2026, 4, 2, 8, 0, tzinfo=UTC),
        about="Hello",
        is_staff=True,
    )
    User.objects.filter(pk=user.pk).update(avatar="avatars/me.png")
    reader = member_read(user)
    with django_assert_num_queries(1):
        read = reader()
    orm = User.objects.get(pk=user.pk)
    fields = User._meta.concrete_fields
    assert len(fields) > 20
    for field in fields:
        ours, theirs = getattr(read, field.attname), getattr(orm, field.attname)
        assert (ours, type(ours)) == (theirs, type(theirs)), field.name
        if isinstance(theirs, datetime):
            assert ours.tzinfo == theirs.tzinfo, field.name
    assert read.metadata["nested"] == {"x": None} and read.avatar.name == "avatars/me.png"
    assert read.email is not None and read.airtm_linked_at.microsecond == 123456
    assert not read._state.adding and read._state.db == "default"
    assert read.get_session_auth_hash() == orm.get_session_auth_hash()


def test_nulls_and_an_empty_avatar_read_as_the_orm_s():
    user = User.objects.create(display_name="Api user", external_user_id="x-1")  # no e-mail
    read, orm = PreparedModelBackend().get_user(user.pk), User.objects.get(pk=user.pk)
    for field in User._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(orm, field.attname), field.name
    assert read.email is None and read.last_login is None and not read.avatar


def test_an_unknown_or_inactive_user_is_none():
    backend = PreparedModelBackend()
    assert backend.get_user(10**12) is None
    user = UserFactory(is_active=False)
    assert backend.get_user(user.pk) is None
    assert async_to_sync(backend.aget_user)(user.pk) is None
    active = UserFactory()
    assert async_to_sync(backend.aget_user)(active.pk) == active


def test_an_inactive_member_s_pages_are_anonymous(client, user):
    client.force_login(user)
    assert client.get("/").wsgi_request.user == user
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_logging_in_names_this_backend_and_a_page_reads_session_and_member_in_one_statement(user):
    client = Client()
    response = client.post("/accounts/login/", {"username": user.email.upper(), "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert client.session[BACKEND_SESSION_KEY] == BACKEND
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)  # as written: parameters apart
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        page = client.get("/accounts/profile/")
    assert page.status_code == 200 and page.wsgi_request.user == user
    assert statements[0] == _session_read().sql
    assert _user_read().sql not in statements  # the member came with the session
    assert sum('FROM "marketplace_visitorsession"' in sql for sql in statements) == 1
    assert sum('FROM "marketplace_user"' in sql for sql in statements) == 1  # in that statement


def test_a_wrong_password_is_hashed_once_and_refused_once(settings, user):
    """This backend refuses what it checked: Django's ModelBackend, listed next, is not asked to
    hash the password again. A known e-mail with a wrong password, and an unknown e-mail."""
    settings.PASSWORD_HASHERS = ["tests.marketplace.test_auth_backend.CountingHasher"]
    user.set_password(TEST_PASSWORD)  # by that hasher: a wrong password is checked by it, not faked
    user.save()
    assert user.password.startswith("counted_md5$")
    failures = []

    def failed(**kwargs):
        failures.append(kwargs["credentials"]["username"])

    user_login_failed.connect(failed)
    try:
        for email in (user.email, "nobody@example.test"):
            CountingHasher.calls = 0
            response = Client().post("/accounts/login/", {"username": email, "password": "wrong"})
            assert "The e-mail address or the password is not right." in response.content.decode()
            assert CountingHasher.calls == 1, email
    finally:
        user_login_failed.disconnect(failed)
    assert failures == [user.email, "nobody@example.test"]


def test_a_password_change_logs_the_other_sessions_out(user):
    here, there = Client(), Client()
    for client in (here, there):
        assert client.login(username=user.email, password=TEST_PASSWORD)
        assert client.get("/").wsgi_request.user == user
    user.set_password("a-new-long-passphrase")
    user.save()
    stale_key = there.session.session_key
    assert not there.get("/").wsgi_request.user.is_authenticated
    assert not Session.objects.filter(session_key=stale_key).exists()  # flushed
    assert not here.get("/").wsgi_request.user.is_authenticated  # no update_session_auth_hash here
    assert here.login(username=user.email, password="a-new-long-passphrase")
    assert here.get("/").wsgi_request.user == user


def test_sign_up_logs_in_with_this_backend_and_older_sessions_still_work(client, user):
    """Sign-up names this backend (marketplace/views.py); a session from before it names Django's
    ModelBackend, and still loads its member (by Django's read)."""
    response = client.post(
        "/accounts/signup/",
        {
            "email": "fresh@example.test",
            "display_name": "Fresh Member",
            "password1": "a-long-unique-passphrase",
            "password2": "a-long-unique-passphrase",
        },
        follow=True,
    )
    assert client.session[BACKEND_SESSION_KEY] == BACKEND
    assert response.wsgi_request.user.email == "fresh@example.test"
    assert "Welcome to OfferHub, Fresh Member!" in response.content.decode()
    assert client.get("/").wsgi_request.user.email == "fresh@example.test"
    older = Client()
    older.force_login(user, backend=DJANGO_BACKEND)
    assert older.session[BACKEND_SESSION_KEY] == DJANGO_BACKEND
    assert older.get("/").wsgi_request.user == user


def test_the_read_is_one_prepared_statement_whatever_the_id(user):
    """psycopg would send a small id as int2 and a larger one as int4 or int8, each type a
    statement of its own: the id goes as bigint."""
    if not hasattr(connection, "prepared_cursor"):
        pytest.skip("Django's own backend: no prepared statements (PgBouncer deployments)")
    backend = load_backend(BACKEND)
    for user_id in (user.pk, 40_000, 3_000_000_000, user.pk):
        backend.get_user(user_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, parameter_types::text FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row for row in cursor.fetchall() if 'FROM "marketplace_user"' in row[0]]
    assert prepared == [(_user_read().sql.replace("%s", "$1"), "{bigint}")]
    # Django's query log (DEBUG, CaptureQueriesContext) shows it with its parameter in place.
    with CaptureQueriesContext(connection) as queries:
        backend.get_user(user.pk)
    assert [query["sql"] for query in queries.captured_queries] == [_user_read().sql % user.pk]
