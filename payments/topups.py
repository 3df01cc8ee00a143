"""Top-ups: dollars in through an Airtm payin, then the USD→USDC bridge (API.md §7, §16).

topup_create commits the row (CREATED) first, then creates the payin at Airtm under the top-up's
id as its unique code, outside any transaction: a lost answer is found by that code later, never
created twice. The member pays on Airtm's checkout page. Only a GET at Airtm moves a top-up
(never a redirect's query or a webhook's body): `topup_refresh` reads the payin and applies its
status forward along §16, skipping states only forward. A payin read CONFIRMED starts the bridge
after commit (`payments.withdrawals.bridge_pay`, idempotent per top-up: it pays USDC from the
treasury to the member's wallet and credits the balance once); once that payment has landed the
top-up is SUCCEEDED. Every transition writes an audit row and its §17 event in one transaction.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from offerhub.errors import ServiceError
from offerhub.money import money_dollars, money_from_stroops, money_to_stroops
from offerhub.services import audit_record, event_publish
from payments.airtm import AirtmClient, AirtmError, Payin, PayinStatus
from payments.balances import balance_snapshot
from payments.models import Topup, Withdrawal

logger = logging.getLogger(__name__)

S = Topup.Status
# A CREATED top-up whose payin Airtm still does not know after this long was never created there
# (a create times out within OFFERHUB_AIRTM_TIMEOUT_SECONDS): it failed.
PAYIN_MISSING_AFTER = timedelta(minutes=5)
# The periodic job leaves a CREATED top-up this long to the request creating its payin.
CREATED_GRACE = timedelta(minutes=1)
SYSTEM = ("SYSTEM", "topups")


def topup_limits() -> tuple[Decimal, Decimal]:
    limits = settings.OFFERHUB_LIMITS["topup"]
    return Decimal(limits["min"]), Decimal(limits["max"])


def topup_for_request(*, principal_id: str, idempotency_key: str) -> Topup | None:
    """The top-up an earlier try of this same API request already created, if any."""
    if not idempotency_key:
        return None
    return Topup.objects.filter(principal_id=principal_id, idempotency_key=idempotency_key).first()


def topup_page_url(topup: Topup) -> str:
    """The member's page for this top-up: where Airtm's checkout sends them back by default."""
    return f"{settings.SITE_URL}/wallet/topups/{topup.public_id}/"


def topup_callback_url(topup: Topup, outcome: str) -> str:
    return f"{settings.SITE_URL}/api/v1/topups/{topup.public_id}/callback?status={outcome}"


# --- records ----------------------------------------------------------------------------


def _record(topup: Topup, action: str, actor_type: str, actor_id: str, before: str | None = None) -> None:
    audit_record(
        action=action,
        resource_type="TopUp",
        resource_id=topup.public_id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_before={"status": before} if before else None,
        payload_after={
            "status": topup.status,
            "amount": money_from_stroops(topup.amount),
            "airtmPayinId": topup.airtm_payin_id or None,
            "failureReason": topup.failure_reason or None,
        },
        user_id=topup.user.public_id,
        marketplace_id=topup.user.marketplace_id,
    )


def _publish(topup: Topup, event_type: str, payload: dict) -> None:
    event_publish(
        type=event_type,
        aggregate_type="TopUp",
        aggregate_id=topup.public_id,
        payload={"topupId": topup.public_id, **payload},
        user_id=topup.user.public_id,
        marketplace_id=topup.user.marketplace_id,
    )


def _amount(topup: Topup) -> str:
    return money_from_stroops(topup.amount)


def _event_payload(topup: Topup) -> tuple[str, dict]:
    """The §17 event for the state the top-up just entered."""
    user_id = topup.user.public_id
    if topup.status == S.AWAITING_USER_CONFIRMATION:
        return "topup.confirmation_required", {"confirmationUri": topup.confirmation_uri}
    if topup.status == S.PROCESSING:
        return "topup.processing", {"airtmPayinId": topup.airtm_payin_id}
    common = {"userId": user_id, "amount": _amount(topup)}
    if topup.status == S.SUCCEEDED:
        return "topup.succeeded", {
            **common,
            "currency": topup.currency,
            "newAvailableBalance": money_from_stroops(balance_snapshot(user=topup.user).available),
            "airtmPayinId": topup.airtm_payin_id or None,
        }
    if topup.status == S.FAILED:
        return "topup.failed", {
            **common,
            "reason": topup.failure_reason,
            "errorCode": topup.error_code or None,
            "airtmPayinId": topup.airtm_payin_id or None,
        }
    return "topup.canceled", {**common, "canceledBy": topup.canceled_by, "reason": topup.failure_reason or None}


def _move(topup: Topup, transition: str, actor: tuple[str, str], **kwargs) -> None:
    """One §16 transition with its audit row and event (same name), in the caller's transaction."""
    before = topup.status
    getattr(topup, transition)(**kwargs)
    topup.save()
    event_type, payload = _event_payload(topup)
    _record(topup, event_type, *actor, before=before)
    _publish(topup, event_type, payload)


def _locked(topup: Topup) -> Topup:
    return Topup.objects.select_for_update(of=("self",)).select_related("user").get(pk=topup.pk)


# --- create -----------------------------------------------------------------------------


def topup_create(
    *,
    user,
    amount: Decimal,
    description: str = "",
    return_url: str = "",
    cancel_url: str = "",
    metadata: dict | None = None,
    principal_id: str = "",
    idempotency_key: str = "",
    actor_type: str,
    actor_id: str,
) -> Topup:
    """A top-up and its payin at Airtm. Answers the top-up AWAITING_USER_CONFIRMATION (with
    Airtm's checkout URL), or still CREATED when Airtm's answer was lost (found by code later);
    a definite refusal fails it and is raised."""
    existing = topup_for_request(principal_id=principal_id, idempotency_key=idempotency_key)
    if existing is not None:  # a retry of a request whose response was lost
        return existing
    if not user.airtm_user_id:
        raise ServiceError(
            "AIRTM_USER_NOT_LINKED",
            "Link an Airtm account to this user before adding funds through Airtm.",
            details={"userId": user.public_id},
        )
    minimum, maximum = topup_limits()
    if not minimum <= amount <= maximum:
        raise ServiceError(
            "INVALID_AMOUNT",
            f"Top-ups must be between ${minimum:,.2f} and ${maximum:,.2f}.",
            field="amount",
            details={"min": str(minimum), "max": str(maximum)},
        )
    with transaction.atomic():
        topup = Topup(
            user=user,
            amount=money_to_stroops(amount),
            description=description,
            metadata=metadata or {},
            principal_id=principal_id,
            idempotency_key=idempotency_key,
            expires_at=timezone.now() + timedelta(minutes=settings.OFFERHUB_TOPUP_EXPIRY_MINUTES),
        )
        topup.return_url = return_url or topup_page_url(topup)
        topup.cancel_url = cancel_url or topup_page_url(topup)
        topup.save()
        _record(topup, "topup.created", actor_type, actor_id)
        _publish(topup, "topup.created", {"userId": user.public_id, "amount": _amount(topup), "currency": "USD"})
    try:
        payin = AirtmClient().payin_create(
            code=topup.public_id,
            amount=money_dollars(topup.amount),
            description=description or "OfferHub balance top-up",
            confirmation_uri=topup_callback_url(topup, "confirmed"),
            cancel_uri=topup_callback_url(topup, "canceled"),
        )
    except AirtmError as error:
        if error.outcome_unknown:
            logger.warning("top-up %s: Airtm's answer was lost (%s); resolved by code later", topup.public_id, error)
            return Topup.objects.select_related("user").get(pk=topup.pk)
        with transaction.atomic():
            topup = _locked(topup)
            if topup.status == S.CREATED:
                _move(topup, "fail", SYSTEM, reason=f"Airtm refused the payment: {error.message}", code=error.code)
        raise
    with transaction.atomic():
        topup = _locked(topup)
        _apply(topup, payin)
    return topup


# --- refresh: Airtm's payin, applied forward ------------------------------------------------


def _payin_read(topup: Topup, client: AirtmClient) -> Payin | None:
    if topup.airtm_payin_id:
        return client.payin_get(topup.airtm_payin_id)
    return client.payin_by_code(topup.public_id)


# Pages poll every 2 s and the callback is public: Airtm is asked at most this often per top-up.
REFRESH_EVERY_SECONDS = 5


def topup_refresh_throttled(*, topup: Topup) -> Topup:
    """`topup_refresh`, unless this top-up was read from Airtm in the last few seconds (for the
    member's page and the public callback; the API's refresh and the jobs always read)."""
    if topup.status in Topup.TERMINAL or not cache.add(f"topup-refresh:{topup.public_id}", 1, REFRESH_EVERY_SECONDS):
        return topup
    return topup_refresh(topup=topup)


def topup_refresh(*, topup: Topup, client: AirtmClient | None = None) -> Topup:
    """Read the payin at Airtm (by id, or by our code when its id is not known yet) and apply
    its status. A top-up whose payment Airtm confirmed has its bridge driven again (after
    commit). A terminal top-up is returned as it is. Safe to call any number of times."""
    topup = Topup.objects.select_related("user").get(pk=topup.pk)
    if topup.status in Topup.TERMINAL:
        return topup
    if topup.payin_confirmed_at is not None:  # Airtm's part is done: only the bridge is left
        topup_bridge_later(topup)
    else:
        payin = _payin_read(topup, client or AirtmClient())  # HTTP before any lock
        with transaction.atomic():
            _apply(_locked(topup), payin)
    # As it is now: the bridge may have run after the commit (in process), or inside the caller's transaction not yet.
    return Topup.objects.select_related("user").get(pk=topup.pk)


def _apply(topup: Topup, payin: Payin | None) -> None:
    """Move a locked top-up as far forward as the payin read at Airtm allows (§16)."""
    if topup.status in Topup.TERMINAL:
        return
    if payin is None:
        if topup.status == S.CREATED and timezone.now() - topup.created_at > PAYIN_MISSING_AFTER:
            _move(topup, "fail", SYSTEM, reason="Airtm never created the payment.", code="PAYIN_NOT_FOUND")
        return
    if payin.code and payin.code != topup.public_id:
        logger.error("top-up %s: Airtm payin %s has code %s", topup.public_id, payin.id, payin.code)
        return
    if payin.amount is not None and payin.amount != money_dollars(topup.amount):
        logger.error("top-up %s: Airtm payin %s is for $%s: left for support", topup.public_id, payin.id, payin.amount)
        return
    if not topup.airtm_payin_id or not topup.confirmation_uri:
        topup.airtm_payin_id = topup.airtm_payin_id or payin.id
        topup.confirmation_uri = topup.confirmation_uri or payin.checkout_url
        topup.save(update_fields=["airtm_payin_id", "confirmation_uri", "updated_at"])
    status = payin.status
    if status == PayinStatus.UNKNOWN:
        return
    if topup.status == S.CREATED and status in (PayinStatus.AWAITING_USER_CONFIRMATION, PayinStatus.CANCELED):
        _move(topup, "await_confirmation", SYSTEM)  # a skip forward: through the state it passed
    if status == PayinStatus.AWAITING_USER_CONFIRMATION:
        return
    if status in (PayinStatus.PROCESSING, PayinStatus.SUCCEEDED):
        if topup.status != S.PROCESSING:
            _move(topup, "process", SYSTEM)
        if status == PayinStatus.SUCCEEDED and topup.payin_confirmed_at is None:
            topup.payin_confirmed_at = timezone.now()
            topup.save(update_fields=["payin_confirmed_at", "updated_at"])
            _record(topup, "topup.payin_confirmed", *SYSTEM)
        if topup.payin_confirmed_at is not None:
            topup_bridge_later(topup)
        return
    reason = payin.raw.get("reasonDescription") or ""
    if status == PayinStatus.CANCELED and topup.status == S.AWAITING_USER_CONFIRMATION:
        expired = topup.expires_at is not None and timezone.now() >= topup.expires_at
        by = Topup.CanceledBy.SYSTEM if expired else Topup.CanceledBy.USER
        _move(topup, "cancel", SYSTEM, by=by, reason=reason or "Canceled at Airtm.")
        return
    # FAILED, BRIDGE_*, or canceled at Airtm after it had started processing.
    code = str(payin.raw.get("reasonCode") or payin.provider_status)
    _move(topup, "fail", SYSTEM, reason=reason or f"Airtm reports the payment {payin.provider_status}.", code=code)


# --- the bridge: USDC to the member's wallet, credited once ------------------------------


def topup_bridge_later(topup: Topup) -> None:
    """Drive the bridge once the caller commits (never inside a transaction)."""
    from payments.tasks import topup_bridge_task

    pk = topup.pk
    transaction.on_commit(lambda: topup_bridge_task.delay(pk), robust=True)


def topup_bridge(*, topup: Topup) -> Topup:
    """Pay the confirmed top-up's USDC to the member's wallet (idempotent per top-up; the
    payment credits the balance once) and settle the top-up when it has landed."""
    from payments.withdrawals import bridge_pay

    topup = Topup.objects.select_related("user").get(pk=topup.pk)
    if topup.status != S.PROCESSING or topup.payin_confirmed_at is None:
        return topup
    withdrawal = bridge_pay(user=topup.user, amount=topup.amount, reference=topup.public_id)
    with transaction.atomic():
        topup = _locked(topup)
        if topup.bridge_withdrawal_id is None:
            topup.bridge_withdrawal = withdrawal
            topup.save(update_fields=["bridge_withdrawal", "updated_at"])
        if topup.status == S.PROCESSING and withdrawal.status == Withdrawal.Status.COMPLETED:
            _move(topup, "succeed", SYSTEM)
    if withdrawal.status == Withdrawal.Status.FAILED:
        # Airtm holds the member's dollars: never a failure to them; support settles it.
        logger.error(
            "top-up %s: the bridge payment %s failed (%s); support must settle it",
            topup.public_id,
            withdrawal.public_id,
            withdrawal.failure_reason,
        )
    return topup


# --- cancel and expiry ----------------------------------------------------------------------


def _not_cancelable(topup: Topup) -> ServiceError:
    return ServiceError(
        "INVALID_STATE",
        f"Only a top-up awaiting the member's confirmation can be canceled; this one is {topup.status}.",
        details={"currentState": topup.status, "allowedStates": [S.AWAITING_USER_CONFIRMATION]},
    )


def topup_cancel(*, topup: Topup, actor_type: str, actor_id: str, canceled_by: str = "user", reason: str = "") -> Topup:
    """Cancel the payin at Airtm (DELETE), then the top-up. Only from AWAITING_USER_CONFIRMATION;
    a payin Airtm will not cancel (already paid) is applied as it is and refused with 409."""
    topup = Topup.objects.select_related("user").get(pk=topup.pk)
    if topup.status != S.AWAITING_USER_CONFIRMATION:
        raise _not_cancelable(topup)
    client = AirtmClient()
    try:
        payin = client.payin_cancel(topup.airtm_payin_id)
    except AirtmError as error:
        if error.code != "INVALID_STATE":
            raise
        topup = topup_refresh(topup=topup, client=client)
        raise _not_cancelable(topup) from None
    with transaction.atomic():
        topup = _locked(topup)
        if topup.status != S.AWAITING_USER_CONFIRMATION:
            raise _not_cancelable(topup)
        if payin.status != PayinStatus.CANCELED:
            _apply(topup, payin)
            raise _not_cancelable(topup)
        _move(topup, "cancel", (actor_type, actor_id), by=canceled_by, reason=reason)
    return topup


def topup_expire(*, topup: Topup) -> Topup:
    """An unpaid top-up past `expires_at`: read Airtm first (it may have been paid), then cancel."""
    topup = topup_refresh(topup=topup)
    if topup.status != S.AWAITING_USER_CONFIRMATION or not topup.expires_at or topup.expires_at > timezone.now():
        return topup
    try:
        return topup_cancel(
            topup=topup,
            actor_type=SYSTEM[0],
            actor_id=SYSTEM[1],
            canceled_by=Topup.CanceledBy.SYSTEM,
            reason="Not paid in time: the top-up expired.",
        )
    except ServiceError as error:
        if error.code != "INVALID_STATE":
            raise
        return Topup.objects.select_related("user").get(pk=topup.pk)


def topups_resolve_pending(*, limit: int = 200) -> int:
    """The periodic job: every unfinished top-up is read again at Airtm (CREATED ones once their
    own request had time), expired ones canceled, confirmed ones' bridges driven again. One
    failure never stops the others. Returns how many were looked at."""
    now = timezone.now()
    open_ones = Topup.objects.filter(status__in=[S.AWAITING_USER_CONFIRMATION, S.PROCESSING, S.CREATED]).select_related(
        "user"
    )
    seen = 0
    for topup in open_ones.order_by("id")[:limit]:
        if topup.status == S.CREATED and now - topup.created_at < CREATED_GRACE:
            continue
        seen += 1
        try:
            if topup.status == S.AWAITING_USER_CONFIRMATION and topup.expires_at and topup.expires_at <= now:
                topup_expire(topup=topup)
            else:
                topup_refresh(topup=topup)
        except Exception:  # one broken top-up (or Airtm down for it) must not stop the others
            logger.exception("could not resolve top-up %s", topup.public_id)
    return seen
