"""Airtm `payout.*` webhooks (API.md §13): a nudge to read the payout at Airtm, never a source of truth.

The body only names the payout (`data.id`, `data.code`); its status is never applied. The
withdrawal is synced from Airtm's GET inside the delivery's transaction; when Airtm reports the
payout COMPLETED, the sweep (chain HTTP) runs after commit in a Celery task, which reads Airtm again.
"""

from django.db import transaction

from offerhub.models import WebhookDelivery
from offerhub.webhooks import WebhookIgnored, webhook_processor
from payments.airtm_withdrawals import AIRTM_TYPES, withdrawal_sync_airtm
from payments.models import Withdrawal

PAYOUT_EVENT_TYPES = (
    "payout.created",
    "payout.committed",
    "payout.pending",
    "payout.pending_user_action",
    "payout.completed",
    "payout.failed",
    "payout.canceled",
)


def _withdrawal_for(payload) -> Withdrawal | None:
    """Our Airtm withdrawal named by the body's payout id, else by its code (our withdrawal id)."""
    data = payload.get("data") if isinstance(payload, dict) and isinstance(payload.get("data"), dict) else {}
    payout_id, code = data.get("id"), data.get("code")
    rows = Withdrawal.objects.filter(purpose=Withdrawal.Purpose.WITHDRAWAL, destination_type__in=AIRTM_TYPES)
    if isinstance(payout_id, str) and payout_id:
        found = rows.filter(airtm_payout_id=payout_id).first()
        if found is not None:
            return found
    if isinstance(code, str) and code:
        found = rows.filter(public_id=code).first()
        other_payout = payout_id and found is not None and found.airtm_payout_id not in ("", payout_id)
        if found is not None and not other_payout:
            return found
    return None


def payout_event_check(*, payload) -> str:
    return "" if _withdrawal_for(payload) is not None else "unknown payout"


@webhook_processor(WebhookDelivery.Provider.AIRTM, PAYOUT_EVENT_TYPES, check=payout_event_check)
def payout_event_nudge(*, delivery: WebhookDelivery, payload) -> None:
    withdrawal = _withdrawal_for(payload)
    if withdrawal is None:
        raise WebhookIgnored("unknown payout")
    synced = withdrawal_sync_airtm(withdrawal=withdrawal)  # an Airtm error fails the delivery: retried
    if synced.sweep_due:
        from payments.tasks import airtm_withdrawal_settle

        pk = synced.withdrawal.pk
        transaction.on_commit(lambda: airtm_withdrawal_settle.delay(pk), robust=True)
