"""The session engine (marketplace.sessions): Django's database sessions, read with their member
and the catalogue's version by one prepared statement. Where a behaviour is Django's, the test
runs on Django's engine too: both must agree."""

from datetime import timedelta
from importlib import import_module
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone

from marketplace.auth_backends import _user_read
from marketplace.catalog_pages import catalog_version
from marketplace.models import User
from marketplace.models import VisitorSession as Session
from marketplace.sessions import SessionStore, _session_read
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


class DjangoEngineOnThisTable(DjangoSessionStore):
    """Django's own engine and read, on the same table (so the tests below can alter its rows)."""

    @classmethod
    def get_model_class(cls):
        return Session


BACKEND = "marketplace.auth_backends.PreparedModelBackend"
ENGINES = pytest.mark.parametrize("engine", [SessionStore, DjangoEngineOnThisTable], ids=["marketplace", "django"])


def saved(engine, data, **expiry):
    store = engine()
    store.update(data)
    if expiry:
        store.set_expiry(expiry["seconds"])
    store.save()
    return store.session_key


def test_it_is_the_configured_engine():
    assert settings.SESSION_ENGINE == "marketplace.sessions"


def test_a_saved_session_loads_with_one_statement(django_assert_num_queries):
    data = {"cart": [1, 2], "name": "Zoë", "_auth_user_id": "7"}
    key = saved(SessionStore, data)
    with django_assert_num_queries(1):
        assert SessionStore(key).load() == data
    # The instance read is the ORM's, field by field.
    read = SessionStore(key)._get_session_from_db()
    orm = Session.objects.get(session_key=key)
    assert (read.session_key, read.session_data, read.expire_date) == (
        orm.session_key,
        orm.session_data,
        orm.expire_date,
    )
    assert read.expire_date.tzinfo == orm.expire_date.tzinfo
    assert not read._state.adding and read._state.db == "default"


@ENGINES
def test_an_expired_session_is_empty_and_saves_under_a_new_key(engine):
    key = saved(engine, {"a": 1}, seconds=-1)
    store = engine(key)
    assert store.load() == {}
    assert store.session_key is None
    store["b"] = 2
    store.save()
    assert store.session_key not in (None, key)


@ENGINES
def test_expiry_is_compared_with_django_clock_strictly(engine, monkeypatch):
    """Not expired while expire_date > timezone.now(), as Django's `expire_date__gt`; the database's
    own clock plays no part."""
    key = saved(engine, {"a": 1})
    moment = timezone.now() + timedelta(days=400)  # far beyond the database's now()
    Session.objects.filter(session_key=key).update(expire_date=moment)
    monkeypatch.setattr(timezone, "now", lambda: moment - timedelta(microseconds=1))
    assert engine(key).load() == {"a": 1}
    monkeypatch.setattr(timezone, "now", lambda: moment)
    assert engine(key).load() == {}


@ENGINES
def test_a_missing_key_is_an_empty_session_and_saves_under_a_new_key(engine):
    store = engine("nosuchsessionkey0123456789")
    assert store.load() == {}
    assert store.session_key is None
    store["a"] = 1
    store.save()
    assert store.session_key != "nosuchsessionkey0123456789"
    assert engine(store.session_key).load() == {"a": 1}


@ENGINES
def test_corrupt_data_is_an_empty_session_and_keeps_its_key_as_django_does(engine):
    key = saved(engine, {"a": 1})
    Session.objects.filter(session_key=key).update(session_data="not a signed session")
    store = engine(key)
    assert store.load() == {}
    assert store.session_key == key
    store["b"] = 2
    store.save()
    assert engine(key).load() == {"b": 2}


def test_writes_cycle_key_and_delete_are_django_s():
    key = saved(SessionStore, {"a": 1})
    store = SessionStore(key)
    store["b"] = 2
    store.cycle_key()
    assert store.session_key != key
    assert not Session.objects.filter(session_key=key).exists()
    assert SessionStore(store.session_key).load() == {"a": 1, "b": 2}
    store.delete()
    assert not Session.objects.filter(session_key=store.session_key).exists()
    assert SessionStore(store.session_key).load() == {}


def test_the_async_read_is_the_same():
    key = saved(SessionStore, {"a": 1})
    assert async_to_sync(SessionStore(key).aload)() == {"a": 1}
    store = SessionStore("nosuchsessionkey0123456789")
    assert async_to_sync(store.aload)() == {}
    assert store.session_key is None


def test_messages_live_in_the_session_across_a_redirect(client, user):
    """MESSAGE_STORAGE keeps messages in the session: saved by one request, read by the next."""
    client.force_login(user)
    response = client.post("/accounts/profile/", {"about": "Hand-made things."}, follow=True)
    assert "Your profile is saved." in response.content.decode()
    assert "Your profile is saved." not in client.get("/accounts/profile/").content.decode()


def test_the_read_is_one_prepared_statement():
    if not hasattr(connection, "prepared_cursor"):
        pytest.skip("Django's own backend: no prepared statements (PgBouncer deployments)")
    key = saved(SessionStore, {"a": 1})
    for _ in range(3):
        assert SessionStore(key).load() == {"a": 1}
    sql = _session_read().sql
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row[0] for row in cursor.fetchall()]
    assert sum('FROM "marketplace_visitorsession"' in statement for statement in prepared) == 1
    assert sql.replace("%s", "$1", 1).replace("%s", "$2", 1) in prepared


# --- The member and the catalogue's version, read with the session ---------------------------


def page_statements(client, path="/"):
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = client.get(path)
    return response, statements


def test_a_saved_session_names_its_member_and_a_visitor_s_names_none(user):
    client = Client()
    client.get("/accounts/login/")  # a visitor's page: no session saved
    assert not Session.objects.exists()
    assert client.post("/accounts/login/", {"username": user.email, "password": TEST_PASSWORD}).status_code == 302
    (session,) = Session.objects.all()
    assert session.member == user and session.session_key == client.session.session_key
    assert str(session).startswith(f"Session of {user} until ") and session.session_key not in str(session)
    visitor = SessionStore()
    visitor["cart"] = [1]
    visitor.save()
    assert Session.objects.get(session_key=visitor.session_key).member is None
    client.post("/accounts/logout/")
    assert list(Session.objects.values_list("member", flat=True)) == [None]


def test_a_page_takes_the_member_and_the_version_read_with_the_session(user):
    client = Client()
    client.force_login(user)
    client.get("/listings/")  # now cached
    response, statements = page_statements(client, "/listings/")
    assert response.wsgi_request.user == user
    assert statements == [_session_read().sql]  # a cached catalogue page: that statement alone
    session = response.wsgi_request.session
    assert session.member == user and session.catalog_version == catalog_version(RequestFactory().get("/"))


def test_the_member_read_with_the_session_is_taken_only_when_the_session_names_them(user):
    """The column and the session's data could only disagree through a bug or a hand-edited row:
    the member the data names (which Django's checks verify) is the one logged in."""
    other = UserFactory()
    client = Client()
    client.force_login(user)
    Session.objects.filter(session_key=client.session.session_key).update(member=other)
    response, statements = page_statements(client)
    assert response.wsgi_request.user == user
    assert statements[0] == _session_read().sql and statements.count(_user_read().sql) == 1


def test_the_backend_reads_the_member_itself_outside_a_page(user):
    """The member a session's read brought serves only that request's user: a later get_user (a
    WebSocket's, a task's) reads the row as it is now."""
    client = Client()
    client.force_login(user)
    assert client.get("/").wsgi_request.user.display_name == user.display_name
    User.objects.filter(pk=user.pk).update(display_name="Renamed Member")
    assert load_backend(BACKEND).get_user(user.pk).display_name == "Renamed Member"


def test_a_session_naming_a_missing_member_saves_and_has_no_member(user):
    key = saved(SessionStore, {SESSION_KEY: "987654321"})  # no such member: no constraint refuses it
    store = SessionStore(key)
    assert store.load() == {SESSION_KEY: "987654321"} and store.member is None
    client = Client()
    client.force_login(user)
    user.delete()  # their sessions go with them
    assert not Session.objects.filter(session_key=client.session.session_key).exists()
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_the_migration_moves_django_s_sessions_so_nobody_is_logged_out(user):
    """marketplace 0014 moves the unexpired rows of Django's django_session here, with their
    member, and empties that table (a log-out here must not come back on a rollback); its reverse
    moves the live ones back."""
    from django.contrib.sessions.models import Session as DjangoSession

    migration = import_module("marketplace.migrations.0014_visitor_session")
    logged_in = DjangoSessionStore()
    logged_in.update(
        {SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: BACKEND, HASH_SESSION_KEY: user.get_session_auth_hash()}
    )
    logged_in.save()
    visitor = saved(DjangoSessionStore, {"cart": [1]})
    odd = saved(DjangoSessionStore, {SESSION_KEY: "²"})  # not a member id: no member, no failure
    saved(DjangoSessionStore, {"cart": [2]}, seconds=-1)  # expired
    editor = SimpleNamespace(connection=connection)
    migration.sessions_move(django_apps, editor)
    moved = {session.session_key: session for session in Session.objects.all()}
    assert set(moved) == {logged_in.session_key, visitor, odd}
    assert moved[logged_in.session_key].member == user and moved[visitor].member is None
    assert not DjangoSession.objects.exists()
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = logged_in.session_key
    assert client.get("/").wsgi_request.user == user
    migration.sessions_move_back(django_apps, editor)
    assert set(DjangoSession.objects.values_list("session_key", flat=True)) == set(moved)


def test_an_async_save_names_the_member_too(user):
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    async_to_sync(store.asave)()
    assert Session.objects.get(session_key=store.session_key).member == user


@pytest.mark.parametrize("role", ["superuser", "support lead"])
def test_support_sees_who_is_logged_in_never_a_key_and_can_sign_a_member_out(user, role):
    from django.contrib.auth.models import Group

    from backoffice.roles import SUPPORT_LEAD
    from offerhub.models import AuditLog

    staff = UserFactory(is_staff=True, is_superuser=role == "superuser")
    if role == "support lead":
        staff.groups.add(Group.objects.get(name=SUPPORT_LEAD))
    member_client = Client()
    member_client.force_login(user)
    key = member_client.session.session_key
    support = Client()
    support.force_login(staff)
    listing = support.get("/admin/marketplace/visitorsession/").content.decode()
    assert user.email in listing and key not in listing and support.session.session_key not in listing
    assert support.get(f"/admin/marketplace/visitorsession/{key}/change/").status_code == 404
    response = support.post(
        "/admin/marketplace/user/", {"action": "sessions_end_selected", "_selected_action": [user.pk]}, follow=True
    )
    assert "Ended 1 session(s) of 1 member(s)." in response.content.decode()
    assert not member_client.get("/").wsgi_request.user.is_authenticated
    assert AuditLog.objects.get(action="user.sessions_ended").payload_after == {"sessions": 1}
    if role != "superuser":
        return  # deleting members is the superuser's alone
    member_client.force_login(user)
    confirm = support.post("/admin/marketplace/user/", {"action": "delete_selected", "_selected_action": [user.pk]})
    assert confirm.status_code == 200 and member_client.session.session_key not in confirm.content.decode()
    support.post(
        "/admin/marketplace/user/", {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"}
    )
    assert not User.objects.filter(pk=user.pk).exists() and not Session.objects.filter(member_id=user.pk).exists()


def test_a_checked_session_value_is_parsed_afresh_for_every_request():
    """The signature of a stored value is checked once per process; each load still gets objects
    of its own (a view changing a nested list changes nothing for the next request), and a value
    one character off is refused as Django refuses it."""
    key = saved(SessionStore, {"cart": [1, 2], "name": "Zoë"})
    first = SessionStore(key)
    assert first.load() == {"cart": [1, 2], "name": "Zoë"}
    first.load()["cart"].append(3)
    assert SessionStore(key).load() == {"cart": [1, 2], "name": "Zoë"}
    stored = Session.objects.get(session_key=key).session_data
    tampered = stored[:-1] + ("A" if stored[-1] != "A" else "B")
    Session.objects.filter(session_key=key).update(session_data=tampered)
    assert SessionStore(key).load() == {}
    assert DjangoEngineOnThisTable(key).load() == {}
