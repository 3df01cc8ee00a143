"""The session engine (offerhub.sessions): Django's database sessions, read by one prepared
statement. Where a behaviour is Django's, the test runs on Django's engine too: both must agree."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

from offerhub.sessions import SessionStore, _session_read

pytestmark = pytest.mark.django_db

ENGINES = pytest.mark.parametrize("engine", [SessionStore, DjangoSessionStore], ids=["offerhub", "django"])


def saved(engine, data, **expiry):
    store = engine()
    store.update(data)
    if expiry:
        store.set_expiry(expiry["seconds"])
    store.save()
    return store.session_key


def test_it_is_the_configured_engine():
    assert settings.SESSION_ENGINE == "offerhub.sessions"


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
    sql, *_ = _session_read(Session)._plan
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row[0] for row in cursor.fetchall()]
    assert sum('FROM "django_session"' in statement for statement in prepared) == 1
    assert sql.replace("%s", "$1", 1).replace("%s", "$2", 1) in prepared
