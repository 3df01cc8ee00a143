"""Payments reads shared by the API and the web pages."""

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from offerhub.errors import ServiceError
from offerhub.money import money_from_stroops
from offerhub.timefmt import iso_timestamp
from payments.balances import balance_snapshot
from payments.models import Topup, Withdrawal


def api_users(*, principal) -> QuerySet:
    """Users an API key may see: all of them, or its marketplace's (API.md §1.10)."""
    users = get_user_model().objects.all()
    if principal.marketplace_id:
        users = users.filter(marketplace_id=principal.marketplace_id)
    return users


def api_user_get(*, principal, public_id: str):
    user = api_users(principal=principal).filter(public_id=public_id).first()
    if user is None:
        raise ServiceError("USER_NOT_FOUND", f"User {public_id} not found", details={"userId": public_id})
    return user


def balance_as_api(*, user, snapshot=None) -> dict:
    snapshot = snapshot or balance_snapshot(user=user)
    updated = iso_timestamp(snapshot.updated_at)
    return {
        "user_id": user.public_id,
        "userId": user.public_id,
        "available": money_from_stroops(snapshot.available),
        "reserved": money_from_stroops(snapshot.reserved),
        "total": money_from_stroops(snapshot.available + snapshot.reserved),
        "currency": "USD",
        "updated_at": updated,
        "updatedAt": updated,
    }


def withdrawal_as_api(withdrawal: Withdrawal) -> dict:
    return {
        "id": withdrawal.public_id,
        "userId": withdrawal.user.public_id,
        "amount": money_from_stroops(withdrawal.amount),
        "fee": None if withdrawal.fee is None else money_from_stroops(withdrawal.fee),
        "currency": withdrawal.currency,
        "status": withdrawal.status,
        "destinationType": withdrawal.destination_type,
        "destinationRef": withdrawal.destination_ref,
        "committed": withdrawal.committed,
        "airtmPayoutId": withdrawal.airtm_payout_id or None,
        "transactionHash": withdrawal.transaction_hash or None,
        "failureReason": withdrawal.failure_reason or None,
        "createdAt": iso_timestamp(withdrawal.created_at),
        "updatedAt": iso_timestamp(withdrawal.updated_at),
    }


def user_withdrawals(*, principal=None, user=None) -> QuerySet[Withdrawal]:
    rows = Withdrawal.objects.filter(purpose=Withdrawal.Purpose.WITHDRAWAL).select_related("user")
    if user is not None:
        rows = rows.filter(user=user)
    if principal is not None and principal.marketplace_id:
        rows = rows.filter(user__marketplace_id=principal.marketplace_id)
    return rows


def topup_as_api(topup: Topup) -> dict:
    return {
        "id": topup.public_id,
        "userId": topup.user.public_id,
        "amount": money_from_stroops(topup.amount),
        "currency": topup.currency,
        "status": topup.status,
        "airtmPayinId": topup.airtm_payin_id or None,
        "confirmationUri": topup.confirmation_uri or None,
        "expiresAt": iso_timestamp(topup.expires_at) if topup.expires_at else None,
        "failureReason": topup.failure_reason or None,
        "description": topup.description or None,
        "createdAt": iso_timestamp(topup.created_at),
        "updatedAt": iso_timestamp(topup.updated_at),
    }


def user_topups(*, principal=None, user=None) -> QuerySet[Topup]:
    rows = Topup.objects.select_related("user")
    if user is not None:
        rows = rows.filter(user=user)
    if principal is not None and principal.marketplace_id:
        rows = rows.filter(user__marketplace_id=principal.marketplace_id)
    return rows
