"""Airtm payin webhooks (API.md §13): a nudge to read the payin at Airtm, never a source of truth.

The body only names the payin (its `id`, or our `code`, the top-up's id). The top-up is then
refreshed with a GET at Airtm (payments.topups.topup_refresh): its status, amount and reason come
from that answer, never from the body. Processing runs inside the delivery's transaction; the
bridge starts after commit. Duplicates and out-of-order deliveries read the same truth, so they
change nothing twice.
"""

from django.db.models import Q

from offerhub.models import WebhookDelivery
from offerhub.webhooks import AIRTM_EVENT_TYPES, WebhookIgnored, webhook_processor
from payments.models import Topup
from payments.topups import topup_refresh

PAYIN_EVENT_TYPES = frozenset(t for t in AIRTM_EVENT_TYPES if t.startswith("payin."))


def _topup_for(payload: dict) -> Topup | None:
    data = payload.get("data") if isinstance(payload, dict) and isinstance(payload.get("data"), dict) else {}
    payin_id, code = data.get("id"), data.get("code")
    match = Q()
    if isinstance(payin_id, str) and payin_id:
        match |= Q(airtm_payin_id=payin_id)
    if isinstance(code, str) and code.startswith("topup_"):
        match |= Q(public_id=code)
    if not match:
        return None
    return Topup.objects.filter(match).select_related("user").order_by("id").first()


def topup_event_check(*, payload: dict) -> str:
    return "" if _topup_for(payload) is not None else "no top-up for this payin"


@webhook_processor(WebhookDelivery.Provider.AIRTM, PAYIN_EVENT_TYPES, check=topup_event_check)
def topup_event_process(*, delivery: WebhookDelivery, payload: dict) -> None:
    topup = _topup_for(payload)
    if topup is None:
        raise WebhookIgnored("no top-up for this payin")
    topup_refresh(topup=topup)  # an Airtm error fails the delivery: retried, then swept
