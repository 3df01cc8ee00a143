"""Withdrawals through Airtm (destinationType `bank` and `airtm_balance`, API.md §11).

Custody: the member's USDC stays in their own Stellar wallet under a hold (available → held)
while Airtm pays them dollars from the platform's Airtm balance. Only when Airtm reports the
payout COMPLETED (read with GET, never taken from a webhook body) does `withdrawal_sweep` move
the held USDC to the treasury on chain and post the hold. A payout FAILED or CANCELED at Airtm
returns the hold to available, exactly once (the withdrawal row is locked and must still be
open; the hold is voided in the same transaction as the status change).

destinationRef: the member's linked Airtm account, by its e-mail or its Airtm user id; the
payout goes to that account. With `airtm_balance` the dollars stay in the member's Airtm
balance; with `bank` the member moves them on to their bank from Airtm (Airtm's payout API
pays Airtm users only). The stored destinationRef is the linked e-mail.

Order of work: the withdrawal and its hold are committed first; the payout is then created at
Airtm outside any transaction, under code = the withdrawal's id. Airtm refuses a second payout
with a code it has, and the client looks the code up before any retry, so a crash or a lost
answer leaves at most one payout, which `withdrawal_refresh_airtm` finds by code (or creates,
once, if none exists). For an Airtm withdrawal `committed` records that the commit was asked
for (commit: true, or POST /commit); `status` says where the payout is.
"""

import contextlib
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import QuerySet

from offerhub.errors import ServiceError
from offerhub.money import money_dollars, money_from_stroops, money_to_stroops
from offerhub.services import audit_record, event_publish
from payments.airtm import AirtmClient, AirtmError, Payout, PayoutStatus
from payments.balances import balance_hold_event, balance_snapshot
from payments.ledger import hold_void
from payments.models import Hold, Wallet, Withdrawal
from payments.withdrawals import (
    payment_for_request,
    withdrawal_funds_lock,
    withdrawal_hold_reserve,
    withdrawal_limits,
    withdrawal_sweep,
)

logger = logging.getLogger(__name__)

S = Withdrawal.Status
AIRTM_TYPES = (Withdrawal.DestinationType.BANK, Withdrawal.DestinationType.AIRTM_BALANCE)
OPEN = (S.CREATED, S.COMMITTED, S.PENDING, S.PENDING_USER_ACTION)
CANCELABLE = (S.CREATED, S.COMMITTED, S.PENDING)  # Airtm decides: only its CREATED or PENDING payouts
_RANK = {S.CREATED: 0, S.COMMITTED: 1, S.PENDING: 2, S.PENDING_USER_ACTION: 3}

# Airtm's definite refusals, in the member's words (stored as failure_reason).
REFUSALS = {
    "AIRTM_USER_INVALID": "Airtm does not know the linked account any more; link your Airtm account again.",
    "WITHDRAWAL_DESTINATION_INVALID": "The linked Airtm account cannot receive payouts (inactive or not verified).",
    "AIRTM_INSUFFICIENT_BALANCE": "Withdrawals to Airtm are unavailable right now; support has been alerted.",
}
WAITING = "Waiting for Airtm to confirm the payout; it is checked again every minute."
CANCELED_BY = {"USER": "user", "API_KEY": "user", "SUPPORT": "admin"}


@dataclass(frozen=True)
class AirtmSync:
    withdrawal: Withdrawal
    payout: Payout | None

    @property
    def sweep_due(self) -> bool:
        """Airtm paid the member (as read from Airtm) and the USDC has not moved to the treasury yet."""
        return (
            self.payout is not None
            and self.payout.status is PayoutStatus.COMPLETED
            and self.withdrawal.status not in Withdrawal.TERMINAL
        )


def airtm_withdrawals_open() -> QuerySet[Withdrawal]:
    """Airtm withdrawals Airtm has not finished with, or whose USDC is not swept yet (oldest first)."""
    return Withdrawal.objects.filter(
        purpose=Withdrawal.Purpose.WITHDRAWAL, destination_type__in=AIRTM_TYPES, status__in=OPEN
    ).order_by("id")


def withdrawal_cancelable(withdrawal: Withdrawal) -> bool:
    """Worth offering a Cancel button: Airtm has the last word (409 when it already pays)."""
    return withdrawal.through_airtm and withdrawal.status in CANCELABLE and not withdrawal.transaction_hash


# --- create ---------------------------------------------------------------------------------


def _destination(*, user, destination_ref: str) -> str:
    if not user.airtm_user_id:
        raise ServiceError(
            "AIRTM_USER_NOT_LINKED",
            "Link an Airtm account first: withdrawals through Airtm pay the linked account.",
            details={"userId": user.public_id},
        )
    ref = (destination_ref or "").strip().lower()
    if ref not in (user.airtm_email.lower(), user.airtm_user_id.lower()):
        raise ServiceError(
            "WITHDRAWAL_DESTINATION_INVALID",
            "Withdrawals through Airtm go to the linked Airtm account: give its e-mail or Airtm user id.",
            field="destinationRef",
            details={"reason": "not_the_linked_account"},
        )
    return user.airtm_email


def withdrawal_create_airtm(
    *,
    user,
    amount: Decimal,
    destination_type: str,
    destination_ref: str,
    commit: bool = False,
    description: str = "",
    principal_id: str = "",
    idempotency_key: str = "",
    actor_type: str,
    actor_id: str,
    airtm: AirtmClient | None = None,
) -> Withdrawal:
    """Hold the amount, commit that, then create the payout at Airtm (committed when `commit`).

    Answers the withdrawal: CREATED/COMMITTED (or later) when Airtm took it, FAILED with the hold
    returned when Airtm refused it, still CREATED when Airtm's answer was lost (resolved by code)."""
    existing = payment_for_request(principal_id=principal_id, idempotency_key=idempotency_key)
    if existing is not None:  # a retry of a request whose response was lost
        return existing
    if destination_type not in AIRTM_TYPES:
        raise ServiceError("VALIDATION_ERROR", "Airtm withdrawals are bank or airtm_balance", field="destinationType")
    email = _destination(user=user, destination_ref=destination_ref)
    minimum, maximum = withdrawal_limits()
    if not minimum <= amount <= maximum:
        raise ServiceError(
            "INVALID_AMOUNT",
            f"Withdrawals must be between ${minimum:,.2f} and ${maximum:,.2f}.",
            field="amount",
            details={"min": str(minimum), "max": str(maximum)},
        )
    if amount != amount.quantize(Decimal("0.01")):
        raise ServiceError("INVALID_AMOUNT", "Airtm pays whole cents.", field="amount")
    if not Wallet.objects.filter(user=user, status=Wallet.Status.ACTIVE).exists():
        raise ServiceError("WALLET_NOT_FOUND", "This account has no active wallet yet.")
    stroops = money_to_stroops(amount)

    with transaction.atomic():
        accounts = withdrawal_funds_lock(user=user, stroops=stroops, requested=amount)
        withdrawal = Withdrawal.objects.create(
            user=user,
            amount=stroops,
            destination_type=destination_type,
            destination_ref=email,
            description=description,
            committed=commit,  # the commit asked for; the status follows Airtm
            principal_id=principal_id,
            idempotency_key=idempotency_key,
        )
        withdrawal_hold_reserve(withdrawal=withdrawal, accounts=accounts)
        _record(withdrawal, "withdrawal.created", actor_type, actor_id)
        _publish(
            withdrawal,
            "withdrawal.created",
            currency="USD",
            destinationType=destination_type,
            destinationRef=email,
        )
    return _payout_create(withdrawal, airtm or AirtmClient(), commit=commit).withdrawal


def _payout_create(withdrawal: Withdrawal, client: AirtmClient, *, commit: bool) -> AirtmSync:
    """Create the payout under the withdrawal's code (HTTP first, then the row is locked and
    updated: no lock is held across a call to Airtm). Answers the withdrawal and the payout as
    Airtm answered it (None when Airtm's answer was lost or it refused)."""
    try:
        payout = client.payout_create(
            code=withdrawal.public_id,
            email=withdrawal.destination_ref,
            amount=money_dollars(withdrawal.amount),
            notes=(withdrawal.description or f"OfferHub withdrawal {withdrawal.public_id}")[:255],
            commit=commit,
        )
    except AirtmError as error:
        if error.outcome_unknown or error.code == "AIRTM_CODE_CONFLICT":
            logger.warning("Airtm payout for %s not confirmed (%s): resolved by code later", withdrawal, error.code)
            return AirtmSync(_note(withdrawal, WAITING), None)
        return AirtmSync(_refused(withdrawal, error, client), None)
    return AirtmSync(apply_payout(withdrawal=withdrawal, payout=payout), payout)


def _refused(withdrawal: Withdrawal, error: AirtmError, client: AirtmClient) -> Withdrawal:
    """Airtm said no. A payout half made under our code (created, then its commit refused) is
    canceled at Airtm first: the hold is returned only when no payout can pay the member."""
    try:
        found = client.payout_by_code(withdrawal.public_id)
        if found is not None and not found.status.terminal:
            found = client.payout_cancel(found.id)
    except AirtmError as lookup_error:
        logger.warning("Airtm refused %s (%s); clean-up not confirmed (%s)", withdrawal, error.code, lookup_error.code)
        return _note(withdrawal, WAITING)
    if found is not None and found.status is PayoutStatus.COMPLETED:  # not a refusal after all
        return apply_payout(withdrawal=withdrawal, payout=found)
    reason = REFUSALS.get(error.code, f"Airtm refused the payout: {error.message}")
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update(of=("self",)).select_related("user").get(pk=withdrawal.pk)
        if found is not None and not withdrawal.airtm_payout_id:
            withdrawal.airtm_payout_id = found.id
        return _close_locked(withdrawal, S.FAILED, reason=reason, code=error.code, canceled_by="system")


def _note(withdrawal: Withdrawal, reason: str) -> Withdrawal:
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update(of=("self",)).select_related("user").get(pk=withdrawal.pk)
        if withdrawal.status not in Withdrawal.TERMINAL and withdrawal.failure_reason != reason:
            withdrawal.failure_reason = reason[:255]
            withdrawal.save(update_fields=["failure_reason", "updated_at"])
    return withdrawal


# --- applying what Airtm says ------------------------------------------------------------------


def _steps(current: str, target: PayoutStatus) -> list[str]:
    """The statuses between ours and Airtm's, forward only (API.md §16); COMPLETED stops at
    PENDING: the sweep completes it once the USDC moved."""
    if current == S.PENDING_USER_ACTION:
        return [S.PENDING] if target in (PayoutStatus.PENDING, PayoutStatus.COMPLETED) else []
    goal = S.PENDING if target == PayoutStatus.COMPLETED else S(target.value) if target.value in _RANK else None
    if goal is None or _RANK[goal] <= _RANK[current]:
        return []
    path = (S.COMMITTED, S.PENDING, S.PENDING_USER_ACTION)
    return [status for status in path if _RANK[current] < _RANK[status] <= _RANK[goal]]


def apply_payout(*, withdrawal: Withdrawal, payout: Payout, canceled_by: str = "system") -> Withdrawal:
    """Move the withdrawal to where the payout is at Airtm (`payout` must come from a GET or an
    answer of Airtm's, never a webhook body): forward only, each step audited and evented;
    FAILED/CANCELED return the hold, once. Never switches to another payout."""
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update(of=("self",)).select_related("user").get(pk=withdrawal.pk)
        if payout.code and payout.code != withdrawal.public_id:
            logger.error("payout %s has code %s, not %s: ignored", payout.id, payout.code, withdrawal.public_id)
            return withdrawal
        if payout.id and withdrawal.airtm_payout_id != payout.id:
            if withdrawal.airtm_payout_id:
                logger.error("%s has payout %s, not %s: ignored", withdrawal, withdrawal.airtm_payout_id, payout.id)
                return withdrawal
            withdrawal.airtm_payout_id = payout.id
            withdrawal.save(update_fields=["airtm_payout_id", "updated_at"])
        if withdrawal.status in Withdrawal.TERMINAL or payout.status is PayoutStatus.UNKNOWN:
            return withdrawal
        if payout.status in (PayoutStatus.FAILED, PayoutStatus.CANCELED):
            reason = payout.reason_description or (
                "Airtm could not pay the withdrawal." if payout.status is PayoutStatus.FAILED else ""
            )
            target = S.FAILED if payout.status is PayoutStatus.FAILED else S.CANCELED
            return _close_locked(withdrawal, target, reason=reason, code=payout.reason_code, canceled_by=canceled_by)
        for step in _steps(withdrawal.status, payout.status):
            _advance(withdrawal, step, payout)
    return withdrawal


def _advance(withdrawal: Withdrawal, step: str, payout: Payout) -> None:
    if step == S.COMMITTED:
        withdrawal.commit()
        withdrawal.save()
        snapshot = balance_snapshot(user=withdrawal.user)
        _record(withdrawal, "withdrawal.committed")
        _publish(
            withdrawal,
            "withdrawal.committed",
            currency="USD",
            committedBalance=money_from_stroops(snapshot.reserved),
            availableBalance=money_from_stroops(snapshot.available),
        )
    elif step == S.PENDING:
        withdrawal.mark_pending()  # from COMMITTED, or PENDING_USER_ACTION once the member acted
        withdrawal.failure_reason = ""
        withdrawal.save()
        _record(withdrawal, "withdrawal.pending")
        _publish(withdrawal, "withdrawal.pending", airtmPayoutId=withdrawal.airtm_payout_id)
    elif step == S.PENDING_USER_ACTION:
        withdrawal.mark_pending_user_action()
        withdrawal.failure_reason = ""
        withdrawal.save()
        _record(withdrawal, "withdrawal.pending_user_action")
        _publish(
            withdrawal,
            "withdrawal.pending_user_action",
            actionRequired=payout.reason_description or "Airtm needs you to act on this payout in your Airtm account.",
        )


def _close_locked(withdrawal: Withdrawal, target: str, *, reason: str, code: str, canceled_by: str) -> Withdrawal:
    """FAILED or CANCELED, hold back to available: the row is locked and still open, so once."""
    if withdrawal.status in Withdrawal.TERMINAL:
        return withdrawal
    if withdrawal.transaction_hash:  # the sweep has sent the USDC: only Airtm's COMPLETED leads there
        logger.error("%s: Airtm says %s after the sweep started; left for support", withdrawal, target)
        return withdrawal
    user = withdrawal.user
    before = balance_snapshot(user=user, lock=True)
    hold_void(user=user, reference=withdrawal.hold_reference, owner=Hold.Owner.PAYMENT)
    after = balance_snapshot(user=user)
    if target == S.FAILED:
        withdrawal.fail(reason=reason or "Airtm could not pay the withdrawal.", code=code)
    else:
        if withdrawal.status == S.PENDING_USER_ACTION:  # the member acted, then Airtm canceled it
            withdrawal.mark_pending()
        withdrawal.cancel(reason=reason)
    withdrawal.save()
    _record(withdrawal, "withdrawal.failed" if target == S.FAILED else "withdrawal.canceled")
    if target == S.FAILED:
        _publish(
            withdrawal,
            "withdrawal.failed",
            reason=withdrawal.failure_reason,
            errorCode=withdrawal.error_code or None,
            airtmPayoutId=withdrawal.airtm_payout_id or None,
        )
    else:
        _publish(
            withdrawal,
            "withdrawal.canceled",
            canceledBy=canceled_by,
            reason=reason or None,
            refundedToBalance=True,
            newAvailableBalance=money_from_stroops(after.available),
        )
    balance_hold_event(
        user, "balance.released", withdrawal.amount, withdrawal.hold_reference, before, after, reason="withdrawal"
    )
    return withdrawal


# --- refresh, commit, cancel -----------------------------------------------------------------


def _airtm_only(withdrawal: Withdrawal, code: str = "INVALID_STATE") -> None:
    if not withdrawal.through_airtm:
        details = {"withdrawalId": withdrawal.public_id}
        raise ServiceError(code, "Only withdrawals through Airtm can do this", details=details)


def _payout_read(withdrawal: Withdrawal, client: AirtmClient) -> Payout | None:
    if withdrawal.airtm_payout_id:
        return client.payout_get(withdrawal.airtm_payout_id)
    return client.payout_by_code(withdrawal.public_id)


def withdrawal_sync_airtm(*, withdrawal: Withdrawal, airtm: AirtmClient | None = None) -> AirtmSync:
    """Read the payout at Airtm (by id, else by code) and apply it; a missing payout of a CREATED
    withdrawal is created (under its code: once), an asked-for commit is made. No chain work."""
    _airtm_only(withdrawal)
    client = airtm or AirtmClient()
    withdrawal = Withdrawal.objects.select_related("user").get(pk=withdrawal.pk)
    if withdrawal.status in Withdrawal.TERMINAL:
        return AirtmSync(withdrawal, None)
    payout = _payout_read(withdrawal, client)
    if payout is None:
        if withdrawal.status != S.CREATED:
            logger.error("%s is %s but Airtm has no payout under its code", withdrawal, withdrawal.status)
            return AirtmSync(withdrawal, None)
        return _payout_create(withdrawal, client, commit=withdrawal.committed)
    if withdrawal.committed and payout.status is PayoutStatus.CREATED and withdrawal.status == S.CREATED:
        try:
            payout = client.payout_commit(payout.id)
        except AirtmError as error:
            logger.warning("%s: Airtm did not commit payout %s (%s)", withdrawal, payout.id, error.code)
    return AirtmSync(apply_payout(withdrawal=withdrawal, payout=payout), payout)


def withdrawal_refresh_airtm(*, withdrawal: Withdrawal, airtm: AirtmClient | None = None) -> Withdrawal:
    """Sync with Airtm; when Airtm reports the payout COMPLETED, sweep the held USDC (chain HTTP:
    never call this inside a transaction)."""
    current = Withdrawal.objects.select_related("user").get(pk=withdrawal.pk)
    if current.transaction_hash and current.status not in Withdrawal.TERMINAL:
        # The sweep began, so Airtm's COMPLETED was read already: finish it even while Airtm is down.
        return withdrawal_sweep(withdrawal=current)
    synced = withdrawal_sync_airtm(withdrawal=withdrawal, airtm=airtm)
    if synced.sweep_due:
        return withdrawal_sweep(withdrawal=synced.withdrawal)
    return synced.withdrawal


def withdrawal_commit_airtm(
    *, withdrawal: Withdrawal, actor_type: str = "SYSTEM", actor_id: str = "airtm", airtm: AirtmClient | None = None
) -> Withdrawal:
    """Commit a CREATED Airtm withdrawal (else 409 WITHDRAWAL_NOT_COMMITTABLE): the intent is
    stored first, so a lost answer is finished by the resolver."""
    _airtm_only(withdrawal, "WITHDRAWAL_NOT_COMMITTABLE")
    client = airtm or AirtmClient()
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update(of=("self",)).select_related("user").get(pk=withdrawal.pk)
        if withdrawal.status != S.CREATED:
            raise ServiceError(
                "WITHDRAWAL_NOT_COMMITTABLE",
                f"Only a WITHDRAWAL_CREATED withdrawal can be committed; this one is {withdrawal.status}",
                details={"withdrawalId": withdrawal.public_id, "status": withdrawal.status},
            )
        if not withdrawal.committed:
            withdrawal.committed = True
            withdrawal.save(update_fields=["committed", "updated_at"])
            _record(withdrawal, "withdrawal.commit_requested", actor_type, actor_id)
    payout = _payout_read(withdrawal, client)
    if payout is None:
        withdrawal = _payout_create(withdrawal, client, commit=True).withdrawal
        if withdrawal.status == S.CREATED:
            raise ServiceError(
                "PROVIDER_ERROR",
                "Airtm has not confirmed the payout yet; it is committed as soon as Airtm answers.",
                details={"withdrawalId": withdrawal.public_id},
            )
        return withdrawal
    try:
        payout = client.payout_commit(payout.id)
    except AirtmError as error:
        if not error.outcome_unknown:  # refused: not committed, and not to be retried by the resolver
            with transaction.atomic():
                locked = Withdrawal.objects.select_for_update(of=("self",)).get(pk=withdrawal.pk)
                if locked.status == S.CREATED:
                    locked.committed = False
                    locked.save(update_fields=["committed", "updated_at"])
        raise
    return apply_payout(withdrawal=withdrawal, payout=payout)


def withdrawal_cancel_airtm(
    *, withdrawal: Withdrawal, actor_type: str, actor_id: str, airtm: AirtmClient | None = None
) -> Withdrawal:
    """Cancel at Airtm, then return the hold (409 INVALID_STATE once Airtm is paying it out).
    A payout that was never created is created uncommitted and canceled: one payout, canceled."""
    _airtm_only(withdrawal)
    client = airtm or AirtmClient()
    withdrawal = Withdrawal.objects.select_related("user").get(pk=withdrawal.pk)
    if withdrawal.status not in CANCELABLE:
        raise _not_cancelable(withdrawal)
    payout = _payout_read(withdrawal, client)
    if payout is None:
        created = _payout_create(withdrawal, client, commit=False)
        withdrawal, payout = created.withdrawal, created.payout
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal  # Airtm refused it: the hold is already back
        if payout is None:
            raise ServiceError(
                "PROVIDER_ERROR",
                "Airtm has not confirmed the payout yet; try again in a minute.",
                details={"withdrawalId": withdrawal.public_id},
            )
    canceled_by = CANCELED_BY.get(actor_type, "system")
    try:
        payout = client.payout_cancel(payout.id)
    except AirtmError as error:
        if error.code != "INVALID_STATE":
            raise
        with contextlib.suppress(AirtmError):  # only to show the member where it is
            withdrawal = apply_payout(withdrawal=withdrawal, payout=client.payout_get(payout.id))
        raise _not_cancelable(withdrawal, airtm_refused=True) from None
    withdrawal = apply_payout(withdrawal=withdrawal, payout=payout, canceled_by=canceled_by)
    if withdrawal.status == S.CANCELED:
        audit_record(
            action="withdrawal.cancel_requested",
            resource_type="Withdrawal",
            resource_id=withdrawal.public_id,
            actor_type=actor_type,
            actor_id=actor_id,
            payload_after={"status": withdrawal.status, "airtmPayoutId": withdrawal.airtm_payout_id},
            user_id=withdrawal.user.public_id,
        )
    return withdrawal


def _not_cancelable(withdrawal: Withdrawal, *, airtm_refused: bool = False) -> ServiceError:
    if airtm_refused:
        message = "Airtm is already paying this withdrawal out; it can no longer be canceled."
    else:
        message = f"This withdrawal can no longer be canceled ({withdrawal.status})."
    return ServiceError(
        "INVALID_STATE", message, details={"withdrawalId": withdrawal.public_id, "status": withdrawal.status}
    )


# --- audit and events ------------------------------------------------------------------------


def _publish(withdrawal: Withdrawal, event_type: str, **fields) -> None:
    """A `withdrawal.*` event: the catalog's common fields, then the event's own (API.md §17)."""
    user_id = withdrawal.user.public_id
    event_publish(
        type=event_type,
        aggregate_type="Withdrawal",
        aggregate_id=withdrawal.public_id,
        payload={
            "withdrawalId": withdrawal.public_id,
            "userId": user_id,
            "amount": money_from_stroops(withdrawal.amount),
            **fields,
        },
        user_id=user_id,
        marketplace_id=withdrawal.user.marketplace_id,
    )


def _record(withdrawal: Withdrawal, action: str, actor_type: str = "SYSTEM", actor_id: str = "airtm") -> None:
    audit_record(
        action=action,
        resource_type="Withdrawal",
        resource_id=withdrawal.public_id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_after={
            "status": withdrawal.status,
            "amount": money_from_stroops(withdrawal.amount),
            "destinationType": withdrawal.destination_type,
            "destinationRef": withdrawal.destination_ref,
            "committed": withdrawal.committed,
            "airtmPayoutId": withdrawal.airtm_payout_id or None,
            "failureReason": withdrawal.failure_reason or None,
        },
        user_id=withdrawal.user.public_id,
    )
