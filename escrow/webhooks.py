"""Trustless Work webhook events (API.md §13): a nudge, never a source of truth.

Trustless Work sends no webhooks itself; operators relay escrow events. The body is not
trusted: for an escrow of ours it only makes us look at the chain sooner. With steps open, we
drive them now (the runner settles what the chain confirms); with none, we read the contract now
as the periodic sync would (a drift is reported to support, never applied). Anything else in the
body is ignored.
"""

from escrow.client import TrustlessWorkClient
from escrow.models import Escrow, EscrowStep
from escrow.services import escrow_drive_later
from escrow.sync import _sync_batch
from offerhub.models import WebhookDelivery
from offerhub.webhooks import TRUSTLESS_WORK_EVENT_TYPES, WebhookIgnored, webhook_processor


def _escrow_for(payload: dict) -> Escrow | None:
    """Our escrow for the body's order, if the contract named (when named) is that escrow's."""
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    order_id, contract_id = data.get("order_id"), data.get("contract_id")
    if not isinstance(order_id, str) or not order_id:
        return None
    escrow = Escrow.objects.filter(engagement_id=order_id).first()
    if escrow is None:
        return None
    if contract_id and escrow.contract_id and contract_id != escrow.contract_id:
        return None  # another contract than the order's: not ours to act on
    return escrow


def escrow_event_check(*, payload: dict) -> str:
    return "" if _escrow_for(payload) is not None else "unknown order"


@webhook_processor(WebhookDelivery.Provider.TRUSTLESS_WORK, TRUSTLESS_WORK_EVENT_TYPES, check=escrow_event_check)
def escrow_event_nudge(*, delivery: WebhookDelivery, payload: dict) -> None:
    escrow = _escrow_for(payload)
    if escrow is None:
        raise WebhookIgnored("unknown order")
    if escrow.steps.filter(status__in=EscrowStep.OPEN).exists():
        escrow_drive_later(escrow)
    elif escrow.contract_id and escrow.status not in Escrow.TERMINAL:
        _sync_batch([escrow], TrustlessWorkClient())  # a provider error fails the delivery: retried
