"""REST endpoints for balances, wallets and withdrawals (API.md §5, §6, §11)."""

from datetime import datetime
from types import SimpleNamespace

from django.conf import settings
from drf_spectacular.utils import extend_schema
from stellar_sdk.exceptions import BadRequestError

from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.pagination import DEFAULT_LIMIT, paginate
from offerhub.api.ratelimit import rate_limit_hit
from offerhub.api.serializers import validated
from offerhub.database import prepared_cursor
from offerhub.errors import STATUS_BY_CODE, ServiceError
from offerhub.money import chain_amount, money_from_stroops, money_to_stroops
from offerhub.timefmt import iso_timestamp
from payments.airtm_withdrawals import (
    withdrawal_cancel_airtm,
    withdrawal_commit_airtm,
    withdrawal_create_airtm,
    withdrawal_refresh_airtm,
)
from payments.balances import (
    DISCREPANCY_TOLERANCE,
    Actor,
    BalanceChange,
    Snapshot,
    balance_adjust,
    balance_cancel_reservation,
    balance_deduct_reserved,
    balance_release,
    balance_reserve,
    balance_sync,
)
from payments.models import LedgerAccount, Wallet, Withdrawal
from payments.providers import rail_required, rail_required_for_destination
from payments.selectors import api_user_get, balance_as_api, user_withdrawals, withdrawal_as_api
from payments.serializers import (
    AdjustInput,
    BalanceOperationOutput,
    BalanceOutput,
    BalanceReleaseOutput,
    BalanceSyncOutput,
    BalanceVerifyOutput,
    EmptyInput,
    HoldInput,
    ReleaseInput,
    WalletDepositOutput,
    WalletOutput,
    WalletTransactionOutput,
    WalletTransactionsQuery,
    WithdrawalCreateInput,
    WithdrawalListQuery,
    WithdrawalOutput,
    WithdrawalOwnerQuery,
)
from payments.stellar import StellarError, _call, account_load, horizon, usdc_balance
from payments.withdrawals import withdrawal_create_crypto, withdrawal_submit

WITHDRAWALS_PER_MINUTE = 5  # per user (API.md §1.8)
BALANCE = ["balance"]
WALLET = ["wallet"]
WITHDRAWALS = ["withdrawals"]


def _actor(request) -> Actor:
    return Actor("API_KEY", request.auth.key_id)


def _operation(user, change: BalanceChange, operation: str, amount) -> dict:
    balance = balance_as_api(user=user, snapshot=change.after)
    return {
        **balance,
        "success": True,
        "operation": operation,
        "amount": str(amount),
        "previousBalance": {
            "available": money_from_stroops(change.before.available),
            "reserved": money_from_stroops(change.before.reserved),
        },
        "newBalance": {"available": balance["available"], "reserved": balance["reserved"]},
        "auditLogId": change.audit.public_id if change.audit else None,
        "balance": balance,
    }


# The balance read's statement, written once: the ORM compiled the same query on every request
# (a fifth of the endpoint's CPU).
_BALANCE_SQL = (
    f"SELECT a.kind, a.balance, a.updated_at FROM {LedgerAccount._meta.db_table} a "  # noqa: S608
    f"JOIN {LedgerAccount._meta.get_field('user').related_model._meta.db_table} u ON u.id = a.user_id "
    "WHERE a.code IN (%s, %s) AND a.kind IN (%s, %s) AND u.public_id = %s"
)


def _balance_read(*, principal, public_id: str) -> dict:
    """balance_as_api for a user the key may see, in one query once the member's two accounts
    exist (their codes name the user; the join checks the user and the key's marketplace);
    before that, the service's path, which creates them."""
    params = [
        f"user:{public_id}:available",
        f"user:{public_id}:held",
        LedgerAccount.Kind.USER_AVAILABLE.value,
        LedgerAccount.Kind.USER_HELD.value,
        public_id,
    ]
    sql = _BALANCE_SQL
    if principal.marketplace_id:
        sql += " AND u.marketplace_id = %s"
        params.append(principal.marketplace_id)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        found = {kind: (balance, updated_at) for kind, balance, updated_at in cursor.fetchall()}
    if len(found) != 2:
        user = api_user_get(principal=principal, public_id=public_id)
        return balance_as_api(user=user)
    (available, available_at), (held, held_at) = (
        found[LedgerAccount.Kind.USER_AVAILABLE],
        found[LedgerAccount.Kind.USER_HELD],
    )
    user = SimpleNamespace(public_id=public_id)
    return balance_as_api(user=user, snapshot=Snapshot(available, held, max(available_at, held_at)))


class BalanceView(ApiView):
    required_scope = "read"

    @extend_schema(summary="A user's balance", tags=BALANCE, responses=BalanceOutput)
    def get(self, request, user_id):
        return api_response(_balance_read(principal=request.auth, public_id=user_id), mirror=True)


class BalanceVerifyView(ApiView):
    required_scope = "read"

    @extend_schema(
        summary="The balance, checked against the chain (409 BALANCE_DISCREPANCY beyond 1.00)",
        tags=BALANCE,
        responses=BalanceVerifyOutput,
    )
    def get(self, request, user_id):
        user = api_user_get(principal=request.auth, public_id=user_id)
        result = balance_sync(user=user)
        data = {**balance_as_api(user=user), "providerVerified": result.provider is not None}
        if result.discrepancy is not None and abs(result.discrepancy) > DISCREPANCY_TOLERANCE:
            raise ServiceError(
                "BALANCE_DISCREPANCY",
                "The ledger and the chain differ by more than 1.00; support has been alerted",
                details={
                    "localBalance": money_from_stroops(result.local),
                    "providerBalance": money_from_stroops(result.provider),
                },
            )
        return api_response(data, mirror=True)


class BalanceSyncView(ApiView):
    required_scope = "write"

    @extend_schema(
        summary="Compare ledger and chain; drift is flagged for support, never moved",
        tags=BALANCE,
        request=None,
        responses=BalanceSyncOutput,
    )
    def post(self, request, user_id):
        validated(EmptyInput, request.data)
        user = api_user_get(principal=request.auth, public_id=user_id)
        result = balance_sync(user=user)
        data = {
            "synced": result.provider is not None,
            "localBalance": money_from_stroops(result.local),
            "providerBalance": "unknown" if result.provider is None else money_from_stroops(result.provider),
            "discrepancy": "unknown" if result.discrepancy is None else money_from_stroops(abs(result.discrepancy)),
            "action": result.action,
            **balance_as_api(user=user),
        }
        return api_response(data, mirror=True)


class _HoldOperationView(ApiView):
    """reserve / cancel-reservation / deduct-reserved share their body: amount + orderId."""

    required_scope = "write"
    operation = ""

    def run(self, request, user, reference: str, stroops: int, description: str) -> BalanceChange:
        raise NotImplementedError

    def post(self, request, user_id):
        data = validated(HoldInput, request.data)
        user = api_user_get(principal=request.auth, public_id=user_id)
        amount = data["amount"]
        change = self.run(request, user, data["orderId"], money_to_stroops(amount), data.get("description", ""))
        return api_response(_operation(user, change, self.operation, amount), mirror=True)


def _hold_schema(summary: str):
    return extend_schema(summary=summary, tags=BALANCE, request=HoldInput, responses=BalanceOperationOutput)


@_hold_schema("Hold available funds for an order reference (409 if it already holds)")
class BalanceReserveView(_HoldOperationView):
    operation = "RESERVE"

    def run(self, request, user, reference, stroops, description):
        return balance_reserve(user=user, reference=reference, amount=stroops, actor=_actor(request))


@_hold_schema("Return held funds to available")
class BalanceCancelReservationView(_HoldOperationView):
    operation = "CANCEL_RESERVATION"

    def run(self, request, user, reference, stroops, description):
        return balance_cancel_reservation(user=user, reference=reference, amount=stroops, actor=_actor(request))


@_hold_schema("Take held funds out of the balance (support)")
class BalanceDeductReservedView(_HoldOperationView):
    required_scope = "support"
    operation = "DEDUCT_RESERVED"
    atomic_handler = False  # it may look the funding transaction up on chain; posting is idempotent

    def run(self, request, user, reference, stroops, description):
        return balance_deduct_reserved(
            user=user, reference=reference, amount=stroops, actor=_actor(request), reason=description
        )


class BalanceReleaseView(ApiView):
    required_scope = "support"
    atomic_handler = False

    @extend_schema(
        summary="Pay held funds to another user's wallet on chain (support)",
        tags=BALANCE,
        request=ReleaseInput,
        responses=BalanceReleaseOutput,
    )
    def post(self, request, user_id):
        data = validated(ReleaseInput, request.data)
        user = api_user_get(principal=request.auth, public_id=user_id)
        seller = api_user_get(principal=request.auth, public_id=data["sellerId"])
        if seller.pk == user.pk:
            raise ServiceError("INVALID_REQUEST", "The seller must be another user", field="sellerId")
        _, seller_change, _ = balance_release(
            user=user,
            seller=seller,
            reference=data["orderId"],
            amount=money_to_stroops(data["amount"]),
            actor=_actor(request),
            principal_id=request.auth.key_id,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        return api_response(
            _operation(seller, seller_change, "RELEASE", data["amount"]) | {"buyerBalance": balance_as_api(user=user)},
            mirror=True,
        )


class _AdjustView(ApiView):
    required_scope = "support"
    atomic_handler = False
    credit = True

    def post(self, request, user_id):
        data = validated(AdjustInput, request.data)
        user = api_user_get(principal=request.auth, public_id=user_id)
        change = balance_adjust(
            user=user,
            amount=money_to_stroops(data["amount"]),
            credit=self.credit,
            reason=data.get("description", ""),
            reference=data.get("reference", ""),
            actor=_actor(request),
            principal_id=request.auth.key_id,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        operation = "CREDIT_AVAILABLE" if self.credit else "DEBIT_AVAILABLE"
        return api_response(_operation(user, change, operation, data["amount"]), mirror=True)


def _adjust_schema(summary: str):
    return extend_schema(summary=summary, tags=BALANCE, request=AdjustInput, responses=BalanceOperationOutput)


@_adjust_schema("Credit available funds, with a reason (support)")
class BalanceCreditView(_AdjustView):
    credit = True


@_adjust_schema("Debit available funds, with a reason (support)")
class BalanceDebitView(_AdjustView):
    credit = False


def _wallet_or_404(user) -> Wallet:
    wallet = Wallet.objects.filter(user=user, status=Wallet.Status.ACTIVE).first()
    if wallet is None:
        raise ServiceError("WALLET_NOT_FOUND", "This user has no active wallet yet", details={"userId": user.public_id})
    return wallet


def _chain(call):
    """Horizon's answer; any failure to get one is PROVIDER_ERROR (API.md §6)."""
    try:
        return call()
    except (StellarError, BadRequestError) as error:
        raise ServiceError("PROVIDER_ERROR", f"Stellar is not answering: {error.message}") from None


class WalletView(ApiView):
    @extend_schema(summary="The user's Stellar wallet and its on-chain balances", tags=WALLET, responses=WalletOutput)
    def get(self, request, user_id):
        wallet = _wallet_or_404(api_user_get(principal=request.auth, public_id=user_id))
        account = _chain(lambda: account_load(wallet.public_key)) or {}
        native = next((b["balance"] for b in account.get("balances", []) if b.get("asset_type") == "native"), "0")
        usdc_stroops = usdc_balance(account) or 0
        return api_response(
            {
                "publicKey": wallet.public_key,
                "type": "INVISIBLE",
                "provider": "STELLAR",
                "isActive": True,
                "isPrimary": True,
                "balance": {"usdc": chain_amount(usdc_stroops), "xlm": native},
                "createdAt": iso_timestamp(wallet.created_at),
            }
        )


class WalletDepositView(ApiView):
    @extend_schema(summary="Where to send USDC to fund the balance", tags=WALLET, responses=WalletDepositOutput)
    def get(self, request, user_id):
        rail_required("crypto")  # OFFERHUB_PAYMENTS_PROVIDER (payments.providers)
        wallet = _wallet_or_404(api_user_get(principal=request.auth, public_id=user_id))
        return api_response(
            {
                "provider": "crypto",
                "method": "stellar_address",
                "address": wallet.public_key,
                "asset": {"code": "USDC", "issuer": settings.STELLAR_USDC_ISSUER},
                "network": settings.STELLAR_NETWORK,
                "instructions": "Send USDC (Stellar network) to this address. It is credited automatically "
                "after one confirmation. Other assets are not credited.",
            }
        )


class WalletTransactionsView(ApiView):
    @extend_schema(
        summary="The wallet's payments on chain, newest first",
        tags=WALLET,
        parameters=[WalletTransactionsQuery],
        responses=WalletTransactionOutput(many=True),
    )
    def get(self, request, user_id):
        query = validated(WalletTransactionsQuery, request.query_params)
        wallet = _wallet_or_404(api_user_get(principal=request.auth, public_id=user_id))
        limit = query.get("limit", DEFAULT_LIMIT)
        request_page = horizon().payments().for_account(wallet.public_key).order(desc=True).limit(limit)
        if query.get("cursor"):
            request_page = request_page.cursor(query["cursor"])
        page = _chain(lambda: _call(request_page.call))
        items = []
        for record in page["_embedded"]["records"]:
            created = record["type"] == "create_account"
            asset = (
                "XLM"
                if created or record.get("asset_type") == "native"
                else (f"{record.get('asset_code')}:{record.get('asset_issuer')}")
            )
            items.append(
                {
                    "id": record["id"],
                    "type": "create_account" if created else "payment",
                    "from": record.get("funder") if created else record.get("from"),
                    "to": record.get("account") if created else record.get("to"),
                    "amount": record.get("starting_balance") if created else record.get("amount"),
                    "asset": asset,
                    "createdAt": _horizon_time(record.get("created_at")),
                    "hash": record.get("transaction_hash"),
                    "successful": record.get("transaction_successful", True),
                }
            )
        # The Horizon feed pages by cursor: more may follow when this page is full.
        has_more = len(items) == limit
        return api_list_response(items, has_more=has_more, next_cursor=items[-1]["id"] if has_more else None)


def _horizon_time(value: str | None) -> str | None:
    """Horizon writes "2026-01-12T10:00:00Z"; the API's timestamps carry milliseconds."""
    return iso_timestamp(datetime.fromisoformat(value.replace("Z", "+00:00"))) if value else None


class WithdrawalListCreateView(ApiView):
    required_scopes = {"GET": "read", "POST": "write"}
    atomic_handler = False

    @extend_schema(
        summary="Withdrawals, newest first",
        tags=WITHDRAWALS,
        parameters=[WithdrawalListQuery],
        responses=WithdrawalOutput(many=True),
    )
    def get(self, request):
        query = validated(WithdrawalListQuery, request.query_params)
        rows = user_withdrawals(principal=request.auth)
        if query.get("userId"):
            rows = rows.filter(user=api_user_get(principal=request.auth, public_id=query["userId"]))
        page = paginate(rows, params=query, id_field="public_id")
        return api_list_response(
            [withdrawal_as_api(w) for w in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )

    @extend_schema(
        summary="Withdraw to a Stellar address (crypto: settled synchronously) or through Airtm (bank, airtm_balance)",
        tags=WITHDRAWALS,
        request=WithdrawalCreateInput,
        responses={201: WithdrawalOutput},
    )
    def post(self, request):
        rail_required_for_destination(request.data)  # OFFERHUB_PAYMENTS_PROVIDER (payments.providers)
        data = validated(WithdrawalCreateInput, request.data)
        user = api_user_get(principal=request.auth, public_id=data["userId"])
        limit = rate_limit_hit(bucket=f"withdrawals:{user.public_id}", limit=WITHDRAWALS_PER_MINUTE, window=60)
        if limit.exceeded:
            raise ServiceError(
                "RATE_LIMITED",
                f"At most {WITHDRAWALS_PER_MINUTE} withdrawals a minute per user",
                details={"limit": limit.limit, "windowSeconds": limit.window, "retryAfter": limit.retry_after},
                headers={"Retry-After": str(limit.retry_after)},
            )
        if data["destinationType"] != Withdrawal.DestinationType.CRYPTO:
            withdrawal = withdrawal_create_airtm(
                user=user,
                amount=data["amount"],
                destination_type=data["destinationType"],
                destination_ref=data["destinationRef"],
                commit=data["commit"],
                description=data.get("description", ""),
                principal_id=request.auth.key_id,
                idempotency_key=request.headers.get("Idempotency-Key", ""),
                actor_type="API_KEY",
                actor_id=request.auth.key_id,
            )
            _airtm_refusal_raise(withdrawal)
            return api_response(withdrawal_as_api(withdrawal), status=201, mirror=True)
        withdrawal = withdrawal_create_crypto(
            user=user,
            amount=data["amount"],
            destination=data["destinationRef"],
            memo=data.get("memo", ""),
            description=data.get("description", ""),
            principal_id=request.auth.key_id,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            actor_type="API_KEY",
            actor_id=request.auth.key_id,
        )
        if withdrawal.status == Withdrawal.Status.FAILED:
            raise ServiceError(
                "STELLAR_NETWORK_ERROR",
                withdrawal.failure_reason,
                details={"withdrawalId": withdrawal.public_id, "errorCode": withdrawal.error_code},
            )
        return api_response(withdrawal_as_api(withdrawal), status=201, mirror=True)


def _airtm_refusal_raise(withdrawal: Withdrawal) -> None:
    """An Airtm withdrawal that Airtm refused (FAILED, hold returned) answers Airtm's error."""
    if withdrawal.status != Withdrawal.Status.FAILED:
        return
    code = withdrawal.error_code if withdrawal.error_code in STATUS_BY_CODE else "PROVIDER_ERROR"
    raise ServiceError(
        code,
        withdrawal.failure_reason,
        details={"withdrawalId": withdrawal.public_id, "status": withdrawal.status, "refundedToBalance": True},
    )


def _withdrawal_or_404(request, withdrawal_id) -> Withdrawal:
    query = validated(WithdrawalOwnerQuery, request.query_params)
    rows = user_withdrawals(principal=request.auth).filter(public_id=withdrawal_id)
    if query.get("userId"):
        rows = rows.filter(user__public_id=query["userId"])
    withdrawal = rows.first()
    if withdrawal is None:
        raise ServiceError("WITHDRAWAL_NOT_FOUND", f"Withdrawal {withdrawal_id} not found")
    return withdrawal


class WithdrawalDetailView(ApiView):
    @extend_schema(
        summary="One withdrawal (optional userId must own it)",
        tags=WITHDRAWALS,
        parameters=[WithdrawalOwnerQuery],
        responses=WithdrawalOutput,
    )
    def get(self, request, withdrawal_id):
        return api_response(withdrawal_as_api(_withdrawal_or_404(request, withdrawal_id)), mirror=True)


class WithdrawalRefreshView(ApiView):
    required_scope = "read"
    idempotency_exempt = True
    atomic_handler = False

    @extend_schema(
        summary="Re-read the withdrawal's settlement",
        tags=WITHDRAWALS,
        request=None,
        parameters=[WithdrawalOwnerQuery],
        responses=WithdrawalOutput,
    )
    def post(self, request, withdrawal_id):
        validated(EmptyInput, request.data)
        withdrawal = _withdrawal_or_404(request, withdrawal_id)
        if withdrawal.through_airtm:
            withdrawal = withdrawal_refresh_airtm(withdrawal=withdrawal)
        elif withdrawal.status in (Withdrawal.Status.COMMITTED, Withdrawal.Status.PENDING):
            withdrawal = withdrawal_submit(withdrawal=withdrawal)
        return api_response(withdrawal_as_api(withdrawal), mirror=True)


class WithdrawalCommitView(ApiView):
    required_scope = "write"
    atomic_handler = False  # it calls Airtm

    @extend_schema(
        summary="Commit an Airtm withdrawal (crypto withdrawals commit on creation: 409)",
        tags=WITHDRAWALS,
        request=None,
        parameters=[WithdrawalOwnerQuery],
        responses=WithdrawalOutput,
    )
    def post(self, request, withdrawal_id):
        validated(EmptyInput, request.data)
        withdrawal = _withdrawal_or_404(request, withdrawal_id)
        if not withdrawal.through_airtm:
            raise ServiceError(
                "WITHDRAWAL_NOT_COMMITTABLE",
                "Only Airtm withdrawals in WITHDRAWAL_CREATED can be committed; crypto withdrawals commit on creation",
                details={"withdrawalId": withdrawal.public_id, "status": withdrawal.status},
            )
        withdrawal = withdrawal_commit_airtm(withdrawal=withdrawal, actor_type="API_KEY", actor_id=request.auth.key_id)
        _airtm_refusal_raise(withdrawal)
        return api_response(withdrawal_as_api(withdrawal), mirror=True)


class WithdrawalCancelView(ApiView):
    required_scope = "write"
    atomic_handler = False  # it calls Airtm

    @extend_schema(
        summary="[X] Cancel an Airtm withdrawal while Airtm allows it (its payout CREATED or PENDING); "
        "the hold returns to available. Otherwise 409 INVALID_STATE",
        tags=WITHDRAWALS,
        request=None,
        parameters=[WithdrawalOwnerQuery],
        responses=WithdrawalOutput,
    )
    def post(self, request, withdrawal_id):
        validated(EmptyInput, request.data)
        withdrawal = _withdrawal_or_404(request, withdrawal_id)
        if not withdrawal.through_airtm:
            raise ServiceError(
                "INVALID_STATE",
                "Crypto withdrawals settle at once and cannot be canceled",
                details={"withdrawalId": withdrawal.public_id, "status": withdrawal.status},
            )
        withdrawal = withdrawal_cancel_airtm(withdrawal=withdrawal, actor_type="API_KEY", actor_id=request.auth.key_id)
        return api_response(withdrawal_as_api(withdrawal), mirror=True)
