"""A test-only endpoint whose handler can be held open, to race two requests on one key."""

import threading

from django.urls import include, path

from offerhub.api.base import ApiView
from offerhub.api.envelope import api_response
from offerhub.errors import ServiceError
from offerhub.services import audit_record


class HeldEffectView(ApiView):
    required_scope = "write"
    entered = threading.Event()
    release = threading.Event()

    def post(self, request):
        HeldEffectView.entered.set()
        HeldEffectView.release.wait(timeout=20)
        row = audit_record(
            action="test.effect", resource_type="Test", resource_id="held", actor_type="SYSTEM", actor_id="tests"
        )
        return api_response({"effect": row.public_id}, status=201)


class FailingEffectView(ApiView):
    """Writes, then fails: the write must roll back and the key be released."""

    required_scope = "write"

    def post(self, request):
        audit_record(action="test.effect", resource_type="Test", resource_id="fail", actor_type="SYSTEM", actor_id="t")
        if request.data.get("mode") == "crash":
            raise RuntimeError("provider exploded")
        raise ServiceError("INSUFFICIENT_FUNDS", "Not enough", details={"requested": "5.00"})


urlpatterns = [
    path("api/v1/test/held", HeldEffectView.as_view()),
    path("api/v1/test/failing", FailingEffectView.as_view()),
    path("", include("offerhub.urls")),
]
