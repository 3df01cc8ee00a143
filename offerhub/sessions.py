"""Django's database sessions, whose read (every page a visitor with a session cookie loads) is
one fixed statement prepared per connection instead of an ORM query compiled each time, which
cost several times the statement itself. Writes, deletes, cycle_key, expiry: Django's own."""

from functools import cache

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone

from offerhub.database import PreparedRowRead


@cache
def _session_read(model) -> PreparedRowRead:
    # The same condition as Django's read: the key, and not expired at this moment by this clock.
    return PreparedRowRead(model, ("session_key", "="), ("expire_date", ">"))


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self):
        session = _session_read(self.model).get(self.session_key, timezone.now())
        if session is None:
            self._session_key = None  # as Django's: saving then creates a new key
        return session

    async def _aget_session_from_db(self):
        # Django's own async read is its sync query in a thread too (QuerySet.aget).
        return await sync_to_async(self._get_session_from_db)()
