"""ASGI entry point: HTTP through Django, the event stream beside it, WebSockets through Channels."""

import gc
import logging
import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "offerhub.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the consumers are imported

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from offerhub.correlation import AccessLogTokenFilter  # noqa: E402
from offerhub.routing import websocket_urlpatterns  # noqa: E402
from offerhub.sse import event_stream_app  # noqa: E402
from offerhub.waits import deferred_answers  # noqa: E402

EVENT_STREAM_PATH = re.compile(r"^/api/v1/events/?$")
logging.getLogger("uvicorn.access").addFilter(AccessLogTokenFilter())  # uvicorn's own logger


def http_router(django_app):
    """GET /api/v1/events to the event stream (a coroutine per stream, no thread: offerhub.sse),
    every other request to Django, whose provider-backed API calls wait for their step on the
    loop (offerhub.waits.deferred_answers), not in a thread."""
    django_app = deferred_answers(django_app)

    async def route(scope, receive, send):
        if EVENT_STREAM_PATH.match(scope["path"]):
            return await event_stream_app(scope, receive, send)
        return await django_app(scope, receive, send)

    return route


def application_build(django_app):
    return ProtocolTypeRouter(
        {
            "http": http_router(django_app),
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )


application = application_build(django_asgi_app)

# What start-up allocated (modules, settings, URL patterns) never becomes garbage: moved out of
# the collector's sight, full collections stay short with a thousand event streams open.
gc.freeze()
