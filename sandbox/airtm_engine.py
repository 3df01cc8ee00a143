"""The sandbox Airtm's state machine: payins, payouts, the enterprise balance, Svix-signed webhooks.

Money is integer cents inside (Airtm speaks USD with at most 2 decimals) and Decimal at the
edges, never float. The HTTP layer is sandbox/airtm.py; tests and the checkout page call the
services here directly (`airtm_payin_settle`, `airtm_payouts_advance`, `airtm_webhooks_deliver_due`).
"""

import logging
import secrets
import uuid
from datetime import timedelta
from decimal import Decimal

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from svix.webhooks import Webhook

from offerhub import jsonnum
from sandbox.models import (
    SandboxAirtmAccount,
    SandboxAirtmPayin,
    SandboxAirtmPayout,
    SandboxAirtmPayoutEvent,
    SandboxAirtmUser,
    SandboxAirtmWebhookDelivery,
)

logger = logging.getLogger(__name__)

Payin = SandboxAirtmPayin
Payout = SandboxAirtmPayout

# Reason codes (PROVIDERS.md).
INSUFFICIENT_BALANCE = "415016"
PAYIN_CODE_EXISTS = "415029"
CANNOT_CANCEL = "415055"
PAYOUT_CODE_EXISTS = "415056"
RECIPIENT_NOT_FOUND = "415059"
RECIPIENT_CANNOT_RECEIVE = "415060"
UNAUTHORIZED = "415904"
# The sandbox's own, for what Airtm documents no code for.
BAD_REQUEST = "BAD_REQUEST"
NOT_FOUND = "NOT_FOUND"
PAYIN_FAILED = "SANDBOX_PAYIN_FAILED"
PAYOUT_FAILED = "SANDBOX_PAYOUT_FAILED"

# Payouts whose money has left `available` but not yet reached the recipient.
HELD = (Payout.Status.COMMITTED, Payout.Status.PENDING, Payout.Status.PENDING_USER_ACTION)
# Svix: the first attempt at once, then retries 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h later.
RETRY_DELAYS_SECONDS = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
DELIVERY_TIMEOUT_SECONDS = 15
CENTS = Decimal("0.01")
MAX_AMOUNT = Decimal("10000000")


class AirtmError(Exception):
    """An answer in Airtm's error shape: `{"code", "message", "data"?}`."""

    def __init__(self, status: int, code: str, message: str, data: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data


# --- amounts and shapes -------------------------------------------------------------


def cents_from_amount(value, field: str, *, allow_zero: bool = False) -> int:
    """A JSON number (int or Decimal, never a string or bool) with at most 2 decimals, as cents."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise AirtmError(400, BAD_REQUEST, f"{field} must be a number", {"field": field})
    amount = Decimal(value)
    if not amount.is_finite() or amount > MAX_AMOUNT:
        raise AirtmError(400, BAD_REQUEST, f"{field} must be a number up to {MAX_AMOUNT}", {"field": field})
    if amount != amount.quantize(CENTS):
        raise AirtmError(400, BAD_REQUEST, f"{field} must have at most 2 decimals", {"field": field})
    if amount < 0 or (amount == 0 and not allow_zero):
        raise AirtmError(400, BAD_REQUEST, f"{field} must be greater than 0", {"field": field})
    return int(amount * 100)


def amount_from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENTS)


def _time(value) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def payin_json(payin: Payin) -> dict:
    return {
        "id": payin.airtm_id,
        "code": payin.code,
        "status": payin.status,
        "amount": amount_from_cents(payin.amount_cents),
        "description": payin.description,
        "items": [
            {
                "description": item["description"],
                "amount": amount_from_cents(item["cents"]),
                "quantity": item["quantity"],
            }
            for item in payin.items
        ],
        "confirmationUri": payin.confirmation_uri,
        "cancelUri": payin.cancel_uri,
        "checkoutUrl": f"{settings.OFFERHUB_AIRTM_CHECKOUT_BASE_URL}/{payin.airtm_id}",
        "reasonCode": payin.reason_code or None,
        "reasonDescription": payin.reason_description or None,
        "createdAt": _time(payin.created_at),
        "updatedAt": _time(payin.updated_at),
    }


def payout_json(payout: Payout) -> dict:
    return {
        "id": payout.airtm_id,
        "code": payout.code,
        "status": payout.status,
        "grossAmount": amount_from_cents(payout.amount_cents),
        "amount": amount_from_cents(payout.amount_cents),
        "netAmount": amount_from_cents(payout.net_cents),
        "airtmFee": amount_from_cents(payout.airtm_fee_cents),
        "enterpriseFee": amount_from_cents(payout.enterprise_fee_cents),
        "airtmUserId": payout.recipient.airtm_id,
        "airtmUserEmail": payout.recipient.email,
        "reasonCode": payout.reason_code or None,
        "reasonDescription": payout.reason_description or None,
        "createdAt": _time(payout.created_at),
        "updatedAt": _time(payout.updated_at),
    }


def user_json(user: SandboxAirtmUser) -> dict:
    return {
        "id": user.airtm_id,
        "status": user.status,
        "primaryEmail": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "country": user.country,
        "isVerified": user.is_verified,
    }


# --- the enterprise account ---------------------------------------------------------


def airtm_account(*, lock: bool = False) -> SandboxAirtmAccount:
    opening = cents_from_amount(Decimal(settings.SANDBOX_AIRTM_OPENING_BALANCE), "opening balance", allow_zero=True)
    account, _ = SandboxAirtmAccount.objects.get_or_create(pk=1, defaults={"opening_balance_cents": opening})
    if lock:
        account = SandboxAirtmAccount.objects.select_for_update().get(pk=1)
    return account


def airtm_balance_cents() -> tuple[int, int]:
    """(available, pending): confirmed payins add, committed payouts are held (pending) until
    they complete (then gone) or fail or are canceled (then back)."""
    account = airtm_account()
    paid_in = Payin.objects.filter(status=Payin.Status.CONFIRMED).aggregate(total=Sum("amount_cents"))["total"] or 0
    held = sum(
        p.debit_cents for p in Payout.objects.filter(status__in=HELD).only("amount_cents", "enterprise_fee_cents")
    )
    paid_out = sum(
        p.debit_cents
        for p in Payout.objects.filter(status=Payout.Status.COMPLETED).only("amount_cents", "enterprise_fee_cents")
    )
    return account.opening_balance_cents + paid_in - held - paid_out, held


def airtm_user_create(
    *,
    email: str,
    first_name: str = "Sandbox",
    last_name: str = "User",
    country: str = "US",
    status: str = SandboxAirtmUser.Status.ACTIVE,
    is_verified: bool = True,
    payout_outcome: str = SandboxAirtmUser.PayoutOutcome.COMPLETE,
) -> SandboxAirtmUser:
    return SandboxAirtmUser.objects.create(
        airtm_id=str(uuid.uuid4()),
        email=email.lower(),
        first_name=first_name,
        last_name=last_name,
        country=country,
        status=status,
        is_verified=is_verified,
        payout_outcome=payout_outcome,
    )


def airtm_user_find(email: str) -> SandboxAirtmUser:
    user = SandboxAirtmUser.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise AirtmError(404, RECIPIENT_NOT_FOUND, "The Airtm user was not found")
    return user


# --- payins -------------------------------------------------------------------------


def airtm_payin_create(
    *, code: str, amount_cents: int, description: str, items: list[dict], confirmation_uri: str, cancel_uri: str
) -> Payin:
    with transaction.atomic():
        if Payin.objects.filter(code=code).exists():
            raise AirtmError(409, PAYIN_CODE_EXISTS, "A payin with this code already exists", {"code": code})
        try:
            with transaction.atomic():  # two requests racing with one code: the loser hears 415029
                payin = Payin.objects.create(
                    airtm_id=str(uuid.uuid4()),
                    code=code,
                    amount_cents=amount_cents,
                    description=description,
                    items=items,
                    confirmation_uri=confirmation_uri,
                    cancel_uri=cancel_uri,
                )
        except IntegrityError:
            raise AirtmError(409, PAYIN_CODE_EXISTS, "A payin with this code already exists", {"code": code}) from None
        _webhook_enqueue("payin", payin)
    return payin


def airtm_payin_get(*, airtm_id: str | None = None, code: str | None = None) -> Payin:
    found = Payin.objects.filter(**({"airtm_id": airtm_id} if airtm_id is not None else {"code": code})).first()
    if found is None:
        raise AirtmError(404, NOT_FOUND, "Payin not found")
    return found


PAYIN_OUTCOMES = {
    "pay": (Payin.Status.CONFIRMED, "", ""),
    "cancel": (Payin.Status.CANCELED, "", ""),
    "fail": (Payin.Status.FAILED, PAYIN_FAILED, "The payment was declined (sandbox)"),
}


def airtm_payin_settle(*, airtm_id: str, outcome: str) -> Payin:
    """The user's choice at the checkout (`pay`, `cancel`) or a failed payment (`fail`); also a
    test hook. Only a CREATED payin moves."""
    status, reason_code, reason = PAYIN_OUTCOMES[outcome]
    with transaction.atomic():
        payin = Payin.objects.select_for_update().filter(airtm_id=airtm_id).first()
        if payin is None:
            raise AirtmError(404, NOT_FOUND, "Payin not found")
        if payin.status != Payin.Status.CREATED:
            raise AirtmError(409, CANNOT_CANCEL, f"The payin is already {payin.status}")
        payin.status, payin.reason_code, payin.reason_description = status, reason_code, reason
        payin.save(update_fields=["status", "reason_code", "reason_description", "updated_at"])
        _webhook_enqueue("payin", payin)
    return payin


# --- payouts ------------------------------------------------------------------------


def airtm_payout_create(
    *,
    email: str,
    amount_cents: int,
    notes: str,
    code: str | None = None,
    commit: bool = False,
    enterprise_fee_cents: int = 0,
    internal_note: str = "",
    require_id_verified: bool = False,
) -> Payout:
    if enterprise_fee_cents > amount_cents:
        raise AirtmError(400, BAD_REQUEST, "enterpriseFee cannot exceed amount", {"field": "enterpriseFee"})
    with transaction.atomic():
        if code is not None and Payout.objects.filter(code=code).exists():
            raise AirtmError(409, PAYOUT_CODE_EXISTS, "A payout with this code already exists", {"code": code})
        recipient = airtm_user_find(email)
        if recipient.status != SandboxAirtmUser.Status.ACTIVE:
            raise AirtmError(422, RECIPIENT_CANNOT_RECEIVE, "The Airtm user cannot receive payouts: inactive")
        if require_id_verified and not recipient.is_verified:
            raise AirtmError(422, RECIPIENT_CANNOT_RECEIVE, "The Airtm user cannot receive payouts: not verified")
        try:
            with transaction.atomic():
                payout = Payout.objects.create(
                    airtm_id=str(uuid.uuid4()),
                    code=code,
                    recipient=recipient,
                    amount_cents=amount_cents,
                    enterprise_fee_cents=enterprise_fee_cents,
                    notes=notes,
                    internal_note=internal_note,
                    require_id_verified=require_id_verified,
                )
        except IntegrityError:
            raise AirtmError(
                409, PAYOUT_CODE_EXISTS, "A payout with this code already exists", {"code": code}
            ) from None
        _payout_record(payout)
        if commit:
            # A commit that cannot be paid refuses the whole request: nothing is created.
            _payout_commit(payout)
    return payout


def airtm_payout_get(*, airtm_id: str | None = None, code: str | None = None) -> Payout:
    lookup = {"airtm_id": airtm_id} if airtm_id is not None else {"code": code}
    found = Payout.objects.select_related("recipient").filter(**lookup).first()
    if found is None:
        raise AirtmError(404, NOT_FOUND, "Payout not found")
    return found


def _payout_locked(airtm_id: str) -> Payout:
    payout = (
        Payout.objects.select_for_update(of=("self",)).select_related("recipient").filter(airtm_id=airtm_id).first()
    )
    if payout is None:
        raise AirtmError(404, NOT_FOUND, "Payout not found")
    return payout


def airtm_payout_commit(*, airtm_id: str) -> Payout:
    with transaction.atomic():
        payout = _payout_locked(airtm_id)
        if payout.status != Payout.Status.CREATED:
            raise AirtmError(409, BAD_REQUEST, f"The payout is already {payout.status}")
        _payout_commit(payout)
    return payout


def _payout_commit(payout: Payout) -> None:
    airtm_account(lock=True)  # serialises commits: the balance check and the hold are one step
    available, _ = airtm_balance_cents()
    if payout.debit_cents > available:
        raise AirtmError(422, INSUFFICIENT_BALANCE, "Insufficient balance in the enterprise account")
    _payout_move(payout, Payout.Status.COMMITTED)


def airtm_payout_cancel(*, airtm_id: str) -> Payout:
    with transaction.atomic():
        payout = _payout_locked(airtm_id)
        if payout.status not in (Payout.Status.CREATED, Payout.Status.PENDING):
            raise AirtmError(409, CANNOT_CANCEL, f"A {payout.status} payout cannot be canceled")
        _payout_move(payout, Payout.Status.CANCELED)
    return payout


def _payout_move(payout: Payout, status: str, *, reason_code: str = "", reason: str = "", now=None) -> None:
    now = now or timezone.now()
    payout.status, payout.reason_code, payout.reason_description = status, reason_code, reason
    still_moving = status in HELD
    payout.next_step_at = now + timedelta(seconds=settings.SANDBOX_AIRTM_PAYOUT_STEP_SECONDS) if still_moving else None
    payout.save(update_fields=["status", "reason_code", "reason_description", "next_step_at", "updated_at"])
    _payout_record(payout)


def _payout_record(payout: Payout) -> None:
    SandboxAirtmPayoutEvent.objects.create(payout=payout, status=payout.status)
    _webhook_enqueue("payout", payout)


def airtm_payouts_advance(*, now=None) -> int:
    """Move every due payout one step: COMMITTED → PENDING → COMPLETED, or FAILED, or
    PENDING_USER_ACTION, as the recipient's `payout_outcome` says. A payout waiting for its user
    goes on when the outcome is changed to complete (or fail). Returns how many moved."""
    now = now or timezone.now()
    due = Payout.objects.filter(status__in=HELD, next_step_at__lte=now).values_list("airtm_id", flat=True)
    moved = 0
    for airtm_id in list(due):
        with transaction.atomic():
            payout = _payout_locked(airtm_id)
            if payout.status not in HELD or payout.next_step_at is None or payout.next_step_at > now:
                continue
            outcome = payout.recipient.payout_outcome
            if payout.status == Payout.Status.COMMITTED:
                _payout_move(payout, Payout.Status.PENDING, now=now)
            elif outcome == SandboxAirtmUser.PayoutOutcome.FAIL:
                _payout_move(
                    payout,
                    Payout.Status.FAILED,
                    reason_code=PAYOUT_FAILED,
                    reason="The recipient's Airtm account could not take the funds (sandbox)",
                    now=now,
                )
            elif outcome == SandboxAirtmUser.PayoutOutcome.USER_ACTION:
                if payout.status == Payout.Status.PENDING_USER_ACTION:
                    continue  # still waiting for the user
                _payout_move(payout, Payout.Status.PENDING_USER_ACTION, now=now)
            else:
                _payout_move(payout, Payout.Status.COMPLETED, now=now)
            moved += 1
    return moved


# --- webhooks, signed as Svix signs them ----------------------------------------------


def _webhook_enqueue(kind: str, resource: Payin | Payout) -> SandboxAirtmWebhookDelivery:
    data = payin_json(resource) if kind == "payin" else payout_json(resource)
    event_type = f"{kind}.{resource.status.lower()}"
    delivery = SandboxAirtmWebhookDelivery.objects.create(
        msg_id=f"msg_{secrets.token_urlsafe(18)}",
        event_type=event_type,
        resource_id=resource.airtm_id,
        url=settings.SANDBOX_AIRTM_WEBHOOK_URL,
        payload=jsonnum.dumps({"type": event_type, "data": data}),
        next_attempt_at=timezone.now(),
    )
    from sandbox.tasks import airtm_webhook_deliver_task

    transaction.on_commit(lambda: airtm_webhook_deliver_task.delay(delivery.pk))
    return delivery


def airtm_webhook_headers(delivery: SandboxAirtmWebhookDelivery, *, at=None) -> dict[str, str]:
    at = (at or timezone.now()).replace(microsecond=0)
    signature = Webhook(settings.OFFERHUB_AIRTM_WEBHOOK_SECRET).sign(delivery.msg_id, at, delivery.payload)
    return {
        "content-type": "application/json",
        "user-agent": "Svix-Webhooks/1.0 (OfferHub sandbox Airtm)",
        "svix-id": delivery.msg_id,
        "svix-timestamp": str(int(at.timestamp())),
        "svix-signature": signature,
    }


def airtm_webhook_attempt(*, delivery_id: int, now=None) -> SandboxAirtmWebhookDelivery | None:
    """One attempt if the delivery is due. Claimed first (its next attempt pushed past the
    timeout), so two workers never send the same attempt; the HTTP call runs outside any lock."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            SandboxAirtmWebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(pk=delivery_id, status=SandboxAirtmWebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(seconds=DELIVERY_TIMEOUT_SECONDS * 2)
        delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
    status, error = None, ""
    try:
        response = requests.post(
            delivery.url,
            data=delivery.payload.encode(),
            headers=airtm_webhook_headers(delivery),
            timeout=DELIVERY_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
        status = response.status_code
    except requests.RequestException as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
    delivery.last_response_status, delivery.last_error = status, error
    finished = max(now, timezone.now())  # a test driving the clock forward keeps its clock
    if status is not None and 200 <= status < 300:
        delivery.status, delivery.next_attempt_at = SandboxAirtmWebhookDelivery.Status.SUCCEEDED, None
    elif delivery.attempts >= len(RETRY_DELAYS_SECONDS):
        delivery.status, delivery.next_attempt_at = SandboxAirtmWebhookDelivery.Status.FAILED, None
    else:
        delay = RETRY_DELAYS_SECONDS[delivery.attempts] * settings.SANDBOX_AIRTM_WEBHOOK_RETRY_FACTOR
        delivery.next_attempt_at = finished + timedelta(seconds=delay)
    delivery.save(update_fields=["status", "next_attempt_at", "last_response_status", "last_error", "updated_at"])
    if delivery.status != SandboxAirtmWebhookDelivery.Status.SUCCEEDED:
        logger.info(
            "sandbox Airtm webhook %s attempt %s failed: %s", delivery.msg_id, delivery.attempts, status or error
        )
    return delivery


def airtm_webhooks_deliver_due(*, now=None) -> int:
    """Attempt every pending delivery that is due (the beat task; tests call it). Returns how many."""
    now = now or timezone.now()
    due = SandboxAirtmWebhookDelivery.objects.filter(
        status=SandboxAirtmWebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).values_list("pk", flat=True)
    return sum(1 for pk in list(due) if airtm_webhook_attempt(delivery_id=pk, now=now) is not None)
