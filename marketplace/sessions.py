"""The session engine (SESSION_ENGINE): Django's database sessions, kept in VisitorSession, whose
read also brings the member the session is logged in as and the catalogue's version.

Every page a visitor with a session cookie loads reads the session, then (logged in) its member,
and a catalogue page the catalogue's version: three round trips to the database, each costing
more than the statement itself. Here they are one prepared statement, run when the session
loads (SessionMiddleware's store is one per request, so what it read is this request's):
- the member, as the backend's read would give it, to AuthenticationMiddleware's user
  (`MemberMiddleware` hands the session to PreparedModelBackend.get_user, which takes the member
  only if it is the one the session names; Django's checks of the session then run as usual);
- the version, to marketplace.catalog_pages.

The member is the row as it was when the session loaded, which in a view that reads the session
first can be a moment before Django's own (lazy) read of request.user would have been: within
the same request, and checked the same way.

Writes, cycle_key, deletion and expiry are Django's; a saved session records its member's id.
"""

import json
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

from asgiref.sync import sync_to_async
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth import get_user as auth_get_user
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import connection
from django.dispatch import receiver
from django.utils import timezone
from django.utils.functional import SimpleLazyObject, cached_property

from offerhub.database import ModelColumns, default_connection, prepared_cursor, prepared_params
from offerhub.lru import LruCache

CATALOG_VERSION_SQL = "SELECT version FROM marketplace_catalog_version WHERE id = 1"
# Session data as stored (signed) -> its JSON, for the values whose signature checked: at most
# 10,000 values of up to 4 KB (a logged-in member's is about 200 bytes).
_verified_sessions = LruCache(max_entries=10_000)
VERIFIED_SESSION_MAX_LENGTH = 4_096


@receiver(setting_changed)
def _signing_keys_changed(*, setting, **kwargs):
    if setting in ("SECRET_KEY", "SECRET_KEY_FALLBACKS"):  # what was checked with the old keys, again
        _verified_sessions.clear()


class _SessionRead:
    """SELECT the session (by key, unexpired by Django's clock), its member (none when logged out)
    and the catalogue's version (none when its row is missing)."""

    @cached_property
    def _plan(self):
        from marketplace.models import VisitorSession

        member_model = get_user_model()
        session, member = ModelColumns(VisitorSession, "s"), ModelColumns(member_model, "m")
        quote = connection.ops.quote_name
        sql = (
            f"SELECT {session.select}, {member.select}, ({CATALOG_VERSION_SQL}) "  # noqa: S608
            f"FROM {quote(VisitorSession._meta.db_table)} s LEFT JOIN {quote(member_model._meta.db_table)} m "
            f"ON m.{quote(member_model._meta.pk.column)} = s.member_id "
            "WHERE s.session_key = %s AND s.expire_date > %s"
        )
        fields = [VisitorSession._meta.get_field(name) for name in ("session_key", "expire_date")]
        return sql, fields, session, member

    @property
    def sql(self) -> str:
        return self._plan[0]

    def get(self, session_key: str):
        """(session, member or None, catalogue version or None); None when no session matches."""
        sql, fields, session, member = self._plan
        db = default_connection()
        with prepared_cursor(db) as cursor:
            cursor.execute(sql, prepared_params(fields, [session_key, timezone.now()], db))
            row = cursor.fetchone()
        if row is None:
            return None
        split = len(session)
        member_values = row[split : split + len(member)]
        found = None if member_values[0] is None else member.instance(member_values, db)
        return session.instance(row[:split], db), found, row[-1]


@cache
def _session_read() -> _SessionRead:
    return _SessionRead()


class SessionStore(DatabaseSessionStore):
    # Read with the session from the database in this request: the member it is logged in as
    # (None when logged out) and the catalogue's version (None when its row is missing).
    read_with_session = False
    member = None
    catalog_version = None

    @classmethod
    def get_model_class(cls):
        from marketplace.models import VisitorSession

        return VisitorSession

    def create_model_instance(self, data):
        session = super().create_model_instance(data)
        session.member_id = _member_id(data.get(SESSION_KEY))
        return session

    async def acreate_model_instance(self, data):
        session = await super().acreate_model_instance(data)
        session.member_id = _member_id(data.get(SESSION_KEY))
        return session

    def _get_session_from_db(self):
        read = _session_read().get(self.session_key)
        if read is None:
            self._session_key = None  # as Django's: saving then creates a new key
            return None
        session, self.member, self.catalog_version = read
        self.read_with_session = True
        return session

    def decode(self, session_data):
        # The data's signature checked, and the text decompressed, once per process for each stored
        # value (they cost a logged-in page a tenth of its CPU); every request still gets objects of
        # its own, parsed from the JSON. A value that fails the check is Django's {} each time.
        verified = _verified_sessions.get(session_data)
        if verified is not None:
            return json.loads(verified)
        data = super().decode(session_data)
        if data and len(session_data) <= VERIFIED_SESSION_MAX_LENGTH:
            _verified_sessions.put(session_data, json.dumps(data))
        return data

    async def _aget_session_from_db(self):
        # Django's own async read is its sync query in a thread too (QuerySet.aget).
        return await sync_to_async(self._get_session_from_db)()

    def member_named(self, user_id):
        """The member read with this session, if it is the member `user_id`; else None."""
        member = self.member
        return member if member is not None and member.pk == user_id else None


def _member_id(value):
    """The member's id from a session's SESSION_KEY (the text of their primary key), or None."""
    if value is None:
        return None
    try:
        return get_user_model()._meta.pk.to_python(value)
    except ValidationError:
        return None


# The session whose member the authentication backend may take, while Django's get_user runs.
_session_for_get_user: ContextVar[SessionStore | None] = ContextVar("session_for_get_user", default=None)


@contextmanager
def _member_from(session):
    token = _session_for_get_user.set(session if isinstance(session, SessionStore) else None)
    try:
        yield
    finally:
        _session_for_get_user.reset(token)


def member_read_with_session(user_id):
    """For PreparedModelBackend.get_user: the member `user_id` as this request's session read
    it, or None (not read with the session, or another member: the backend reads it)."""
    session = _session_for_get_user.get()
    return None if session is None else session.member_named(user_id)


def _user_get(request):
    if not hasattr(request, "_cached_user"):
        with _member_from(request.session):
            request._cached_user = auth_get_user(request)
    return request._cached_user


class MemberMiddleware(AuthenticationMiddleware):
    """Django's AuthenticationMiddleware, whose request.user takes the member read with the
    session instead of reading it again. (request.auser, the async path, is Django's.)"""

    def process_request(self, request):
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: _user_get(request))
