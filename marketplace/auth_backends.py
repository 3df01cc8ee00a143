"""Django's ModelBackend, whose read of the logged-in member (every page they load) is the one
their session's read brought (marketplace.sessions), or else one fixed statement prepared per
connection instead of an ORM query compiled each time, which cost several times the statement
itself. Logging in (e-mail and password) is Django's own."""

from functools import cache

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from marketplace.sessions import member_read_with_session
from offerhub.database import PreparedRowRead


@cache
def _user_read() -> PreparedRowRead:
    model = get_user_model()
    return PreparedRowRead(model, (model._meta.pk.name, "="))


class PreparedModelBackend(ModelBackend):
    """Listed before Django's ModelBackend, which stays in AUTHENTICATION_BACKENDS for the sessions
    logged in before this backend (they name it)."""

    def get_user(self, user_id):
        user = member_read_with_session(user_id) or _user_read().get(user_id)
        if user is None:
            return None
        return user if self.user_can_authenticate(user) else None

    async def aget_user(self, user_id):
        return await sync_to_async(self.get_user)(user_id)

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            self._refuse_checked(username, password, kwargs)
        return user

    async def aauthenticate(self, request, username=None, password=None, **kwargs):
        user = await super().aauthenticate(request, username, password, **kwargs)
        if user is None:
            self._refuse_checked(username, password, kwargs)
        return user

    @staticmethod
    def _refuse_checked(username, password, kwargs):
        """Credentials this backend checked and refused end authenticate() here (PermissionDenied:
        no further backend is asked): the ModelBackend listed next would reach the same verdict
        after hashing the password a second time, doubling a failed log-in's cost."""
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is not None and password is not None:
            raise PermissionDenied
