"""The sandbox providers' HTTP APIs. Horizon here: the subset OfferHub uses, with
Horizon's JSON shapes and error bodies, so an unmodified `stellar_sdk.Server` works."""

from urllib.parse import urlencode

from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from stellar_sdk import StrKey

from sandbox.chain import TransactionRejected, chain_friendbot, chain_mint_usdc, chain_submit, format_amount, to_stroops
from sandbox.faults import with_faults
from sandbox.models import SandboxAccount, SandboxLedgerState, SandboxPayment, SandboxTransaction

HORIZON_ERRORS = "https://stellar.org/horizon-errors/"


def _horizon_time(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(status: int, kind: str, title: str, detail: str, extras: dict | None = None) -> JsonResponse:
    body = {"type": HORIZON_ERRORS + kind, "title": title, "status": status, "detail": detail}
    if extras is not None:
        body["extras"] = extras
    return JsonResponse(body, status=status)


def _not_found() -> JsonResponse:
    return _problem(
        404,
        "not_found",
        "Resource Missing",
        "The resource at the url requested was not found.  This usually occurs for one of two reasons:  "
        "The url requested is not valid, or no data in our database could be found with the parameters provided.",
    )


def _base(request) -> str:
    return request.build_absolute_uri("/sandbox/horizon")


def horizon_root(request):
    """Horizon's `GET /`: network and version information."""
    base = _base(request)
    state = SandboxLedgerState.objects.first()
    latest = state.ledger_sequence if state else 0
    # The sandbox closes a ledger per transaction and is never behind: its latest ledger is "now".
    return JsonResponse(
        {
            "_links": {"account": {"href": f"{base}/accounts/{{account_id}}", "templated": True}},
            "horizon_version": "offerhub-sandbox",
            "core_version": "offerhub-sandbox",
            "history_latest_ledger": latest,
            "history_latest_ledger_closed_at": _horizon_time(timezone.now()),
            "core_latest_ledger": latest,
            "network_passphrase": settings.STELLAR_NETWORK_PASSPHRASE,
        }
    )


def trustless_work_root(request):
    return JsonResponse({"name": "Trustless Work API (OfferHub sandbox)", "version": "v1"})


def airtm_root(request):
    return JsonResponse({"name": "Airtm Enterprise API (OfferHub sandbox)", "version": "v2"})


def _account_json(request, account: SandboxAccount) -> dict:
    balances = [
        {
            "balance": format_amount(line.balance),
            "limit": format_amount(line.limit),
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "last_modified_ledger": line.last_modified_ledger,
            "is_authorized": True,
            "is_authorized_to_maintain_liabilities": True,
            "asset_type": "credit_alphanum4" if len(line.asset_code) <= 4 else "credit_alphanum12",
            "asset_code": line.asset_code,
            "asset_issuer": line.asset_issuer,
            **({"sponsor": line.sponsor} if line.sponsor else {}),
        }
        for line in account.trustlines.all().order_by("id")
    ]
    balances.append(
        {
            "balance": format_amount(account.xlm_balance),
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "asset_type": "native",
        }
    )
    signers = [{"weight": account.master_weight, "key": account.account_id, "type": "ed25519_public_key"}]
    signers += [{"weight": s.weight, "key": s.key, "type": "ed25519_public_key"} for s in account.signers.all()]
    base = _base(request)
    data = {
        "_links": {
            "self": {"href": f"{base}/accounts/{account.account_id}"},
            "payments": {"href": f"{base}/accounts/{account.account_id}/payments{{?cursor,limit,order}}"},
        },
        "id": account.account_id,
        "account_id": account.account_id,
        "sequence": str(account.sequence),
        "subentry_count": account.num_subentries,
        "last_modified_ledger": account.last_modified_ledger,
        "thresholds": {
            "low_threshold": account.low_threshold,
            "med_threshold": account.med_threshold,
            "high_threshold": account.high_threshold,
        },
        "flags": {
            "auth_required": False,
            "auth_revocable": False,
            "auth_immutable": False,
            "auth_clawback_enabled": False,
        },
        "balances": balances,
        "signers": signers,
        "data": {},
        "num_sponsoring": account.num_sponsoring,
        "num_sponsored": account.num_sponsored,
        "paging_token": account.account_id,
    }
    if account.sponsor:
        data["sponsor"] = account.sponsor
    return data


@require_GET
@with_faults("horizon")
def account_detail(request, account_id):
    account = SandboxAccount.objects.filter(account_id=account_id).prefetch_related("trustlines", "signers").first()
    if account is None:
        return _not_found()
    return JsonResponse(_account_json(request, account))


def _transaction_json(request, record: SandboxTransaction) -> dict:
    base = _base(request)
    return {
        "_links": {"self": {"href": f"{base}/transactions/{record.hash}"}},
        "id": record.hash,
        "paging_token": str(record.ledger << 32),
        "successful": record.successful,
        "hash": record.hash,
        "ledger": record.ledger,
        "created_at": _horizon_time(record.created_at),
        "source_account": record.source_account,
        "source_account_sequence": str(record.source_account_sequence),
        "fee_account": record.fee_account,
        "fee_charged": str(record.fee_charged),
        "max_fee": str(record.max_fee),
        "operation_count": record.operation_count,
        "envelope_xdr": record.envelope_xdr,
        "memo_type": record.memo_type,
        **({"memo": record.memo} if record.memo_type != "none" else {}),
    }


def _failed(record: SandboxTransaction) -> JsonResponse:
    return _problem(
        400,
        "transaction_failed",
        "Transaction Failed",
        "The transaction failed when submitted to the stellar network. The `extras.result_codes` field on this "
        "response contains further details.",
        {"envelope_xdr": record.envelope_xdr, "result_codes": record.result_codes, "hash": record.hash},
    )


@csrf_exempt
@require_POST
@with_faults("horizon")
def submit_transaction(request):
    envelope_xdr = request.POST.get("tx", "")
    if not envelope_xdr:
        return _problem(
            400,
            "transaction_malformed",
            "Transaction Malformed",
            "form field `tx` is required",
            {"invalid_field": "tx"},
        )
    try:
        record = chain_submit(envelope_xdr=envelope_xdr)
    except TransactionRejected as rejected:
        if rejected.code == "tx_malformed":
            return _problem(
                400,
                "transaction_malformed",
                "Transaction Malformed",
                rejected.detail,
                {"envelope_xdr": envelope_xdr, "invalid_field": "tx"},
            )
        return _problem(
            400,
            "transaction_failed",
            "Transaction Failed",
            rejected.detail,
            {"envelope_xdr": envelope_xdr, "result_codes": rejected.result_codes},
        )
    if not record.successful:
        return _failed(record)
    return JsonResponse(_transaction_json(request, record))


@require_GET
@with_faults("horizon")
def transaction_detail(request, tx_hash):
    record = SandboxTransaction.objects.filter(hash=tx_hash).first()
    if record is None:
        return _not_found()
    return JsonResponse(_transaction_json(request, record))


def _payment_json(request, payment: SandboxPayment) -> dict:
    base = _base(request)
    record = {
        "_links": {"transaction": {"href": f"{base}/transactions/{payment.transaction_id}"}},
        "id": str(payment.id),
        "paging_token": str(payment.id),
        "transaction_successful": True,
        "source_account": payment.source_account,
        "type": payment.type,
        "type_i": 0 if payment.type == "create_account" else 1,
        "created_at": _horizon_time(payment.created_at),
        "transaction_hash": payment.transaction_id,
    }
    if payment.type == "create_account":
        record.update(
            {
                "starting_balance": format_amount(payment.amount),
                "funder": payment.from_account,
                "account": payment.to_account,
            }
        )
    else:
        if payment.asset_code:
            record.update(
                {
                    "asset_type": "credit_alphanum4" if len(payment.asset_code) <= 4 else "credit_alphanum12",
                    "asset_code": payment.asset_code,
                    "asset_issuer": payment.asset_issuer,
                }
            )
        else:
            record["asset_type"] = "native"
        record.update({"from": payment.from_account, "to": payment.to_account, "amount": format_amount(payment.amount)})
    return record


def _payments_page(request, payments, path: str) -> JsonResponse:
    order = request.GET.get("order", "asc")
    if order not in ("asc", "desc"):
        return _problem(400, "bad_request", "Bad Request", "order must be asc or desc", {"invalid_field": "order"})
    try:
        limit = int(request.GET.get("limit", "10"))
        cursor = request.GET.get("cursor", "")
        cursor_id = int(cursor) if cursor and cursor != "now" else None
    except ValueError:
        return _problem(400, "bad_request", "Bad Request", "cursor and limit must be integers")
    if not 1 <= limit <= 200:
        return _problem(
            400, "bad_request", "Bad Request", "limit must be between 1 and 200", {"invalid_field": "limit"}
        )
    if cursor == "now":
        payments = payments.none()
    elif cursor_id is not None:
        payments = payments.filter(id__gt=cursor_id) if order == "asc" else payments.filter(id__lt=cursor_id)
    rows = list(payments.order_by("id" if order == "asc" else "-id")[:limit])
    base = _base(request) + path

    def link(cursor_value, link_order):
        query = urlencode({"cursor": cursor_value, "limit": limit, "order": link_order})
        return {"href": f"{base}?{query}"}

    last = str(rows[-1].id) if rows else cursor
    first = str(rows[0].id) if rows else cursor
    return JsonResponse(
        {
            "_links": {
                "self": link(cursor, order),
                "next": link(last, order),
                "prev": link(first, "desc" if order == "asc" else "asc"),
            },
            "_embedded": {"records": [_payment_json(request, row) for row in rows]},
        }
    )


@require_GET
@with_faults("horizon")
def payments(request):
    return _payments_page(request, SandboxPayment.objects.all(), "/payments")


@require_GET
@with_faults("horizon")
def account_payments(request, account_id):
    if not SandboxAccount.objects.filter(account_id=account_id).exists():
        return _not_found()
    involved = SandboxPayment.objects.filter(to_account=account_id) | SandboxPayment.objects.filter(
        from_account=account_id
    )
    return _payments_page(request, involved, f"/accounts/{account_id}/payments")


def _operation_failed(rejected: TransactionRejected) -> JsonResponse:
    """A sandbox-made transaction (friendbot, faucet) whose one operation failed."""
    return _problem(
        400,
        "transaction_failed",
        "Transaction Failed",
        rejected.detail,
        {"result_codes": {"transaction": "tx_failed", "operations": [rejected.code]}},
    )


@require_GET
@with_faults("horizon")
def friendbot(request):
    account_id = request.GET.get("addr", "")
    try:
        record = chain_friendbot(account_id=account_id)
    except TransactionRejected as rejected:
        return _operation_failed(rejected)
    return JsonResponse(_transaction_json(request, record))


@csrf_exempt
@require_POST
@with_faults("horizon")
def faucet(request):
    """Sandbox only: mint USDC to an account (`addr`, `amount` as a decimal string). With a
    `memo` (a text memo, at most 28 bytes) the mint happens once per account and memo:
    asking again answers the same transaction, so a caller may retry a lost answer."""
    account_id = request.POST.get("addr", "")
    if not StrKey.is_valid_ed25519_public_key(account_id):
        return _problem(
            400, "bad_request", "Bad Request", "addr must be a Stellar account id", {"invalid_field": "addr"}
        )
    try:
        amount = to_stroops(request.POST.get("amount", ""))
    except (ValueError, ArithmeticError):
        return _problem(
            400,
            "bad_request",
            "Bad Request",
            "amount must be a decimal with at most 7 places",
            {"invalid_field": "amount"},
        )
    try:
        record = chain_mint_usdc(account_id=account_id, amount=amount, memo=request.POST.get("memo", ""))
    except TransactionRejected as rejected:
        return _operation_failed(rejected)
    return JsonResponse(_transaction_json(request, record))
