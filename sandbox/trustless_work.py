"""Trustless Work API v1 paths, bodies, status codes and response shapes (PROVIDERS.md)."""

import json

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from offerhub import jsonnum
from offerhub.api.ratelimit import rate_limit_hit
from sandbox.chain import TransactionRejected, chain_submit, network_passphrase
from sandbox.escrow import (
    DEPLOYER_CONTRACT,
    EscrowRuleError,
    build_unsigned,
    check_call,
    deploy_params,
    stroops_to_units,
)
from sandbox.faults import with_faults
from sandbox.models import SandboxEscrow, SandboxEscrowCall

# action -> the body field naming who signs
SIGNER_FIELD = {
    "fund-escrow": "signer",
    "change-milestone-status": "serviceProvider",
    "approve-milestone": "approver",
    "release-funds": "releaseSigner",
    "release-milestone-funds": "releaseSigner",
    "dispute-escrow": "signer",
    "dispute-milestone": "signer",
    "resolve-dispute": "disputeResolver",
    "resolve-milestone-dispute": "disputeResolver",
    "withdraw-remaining-funds": "disputeResolver",
    "update-escrow": "signer",
}
ONLY_FOR = {
    "release-funds": "single-release",
    "dispute-escrow": "single-release",
    "resolve-dispute": "single-release",
    "release-milestone-funds": "multi-release",
    "dispute-milestone": "multi-release",
    "resolve-milestone-dispute": "multi-release",
    "withdraw-remaining-funds": "multi-release",
}


def respond(data, status: int = 200) -> HttpResponse:
    """JSON whose amounts are numbers (Decimal written exactly, never through a float)."""
    return HttpResponse(jsonnum.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, code: str = "") -> HttpResponse:
    return respond({"message": message, **({"error": code} if code else {}), "statusCode": status}, status)


def trustless_work_api(view):
    """x-api-key on every request, the 50-per-minute limit, fault injection, JSON bodies."""

    @csrf_exempt
    @with_faults("trustless-work")
    def wrapped(request, *args, **kwargs):
        key = request.headers.get("x-api-key", "")
        if not key or key != settings.TRUSTLESS_WORK_API_KEY:
            return _error(401, "Unauthorized: a valid x-api-key header is required")
        limit = rate_limit_hit(bucket=f"sandbox-tw:{key}", limit=settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT, window=60)
        if limit.exceeded:
            response = _error(429, "ThrottlerException: Too Many Requests")
            response["Retry-After"] = str(limit.retry_after)
            return response
        if request.method == "POST" or request.method == "PUT":
            try:
                request.json = jsonnum.loads(request.body or b"{}")
            except ValueError:
                return _error(400, "Malformed JSON body")
            if not isinstance(request.json, dict):
                return _error(400, "The body must be a JSON object")
        try:
            return view(request, *args, **kwargs)
        except EscrowRuleError as refused:
            return _error(400, refused.message, refused.code)

    return wrapped


def _unsigned(xdr: str) -> HttpResponse:
    return respond({"status": "SUCCESS", "unsignedTransaction": xdr}, 201)


def _escrow_for(contract_id, escrow_type: str) -> SandboxEscrow:
    escrow = SandboxEscrow.objects.filter(contract_id=contract_id or "").first()
    if escrow is None or not escrow.indexed:
        raise EscrowRuleError("ESCROW_NOT_FOUND", "Escrow not found")
    if escrow.type != escrow_type:
        raise EscrowRuleError("ESCROW_NOT_FOUND", f"Escrow not found among {escrow_type} escrows")
    return escrow


@require_POST
@trustless_work_api
def deploy(request, escrow_type):
    state = deploy_params(escrow_type, request.json)
    stored = {**state, "milestones": state["milestones"]}
    xdr, tx_hash, call_key = build_unsigned(
        signer=state["signer"],
        contract_id=DEPLOYER_CONTRACT,
        function=f"deploy-{escrow_type}",
        params={k: v for k, v in state.items() if k != "milestones"} | {"milestones": len(state["milestones"])},
    )
    SandboxEscrowCall.objects.update_or_create(
        tx_hash=tx_hash,
        defaults={
            "call_key": call_key,
            "action": f"deploy-{escrow_type}",
            "escrow_type": escrow_type,
            "signer": state["signer"],
            "params": stored,
        },
    )
    return _unsigned(xdr)


@require_POST
@trustless_work_api
def escrow_call(request, escrow_type, action):
    if ONLY_FOR.get(action, escrow_type) != escrow_type:
        return _error(404, f"Cannot POST /escrow/{escrow_type}/{action}")
    return _prepare_call(request.json, escrow_type, action)


@require_http_methods(["PUT"])
@trustless_work_api
def update_escrow(request, escrow_type):
    return _prepare_call(request.json, escrow_type, "update-escrow")


def _prepare_call(body: dict, escrow_type: str, action: str) -> HttpResponse:
    """Check the call against the escrow's current state; hand out its unsigned transaction."""
    signer_field = SIGNER_FIELD[action]
    if not all(isinstance(body.get(field), str) and body[field] for field in ("contractId", signer_field)):
        raise EscrowRuleError("VALIDATION_ERROR", f"contractId and {signer_field} are required")
    escrow = _escrow_for(body["contractId"], escrow_type)
    signer = body[signer_field]
    arguments = check_call(escrow, _engine_action(action), signer, body)
    params = {"contractId": escrow.contract_id, "signer": signer} | arguments
    xdr, tx_hash, call_key = build_unsigned(
        signer=signer, contract_id=escrow.contract_id, function=_engine_action(action), params=params
    )
    SandboxEscrowCall.objects.update_or_create(
        tx_hash=tx_hash,
        defaults={
            "call_key": call_key,
            "action": _engine_action(action),
            "escrow_type": escrow_type,
            "contract_id": escrow.contract_id,
            "signer": signer,
            "params": _json_safe(body),
        },
    )
    return _unsigned(xdr)


def _engine_action(action: str) -> str:
    return "fund" if action == "fund-escrow" else action


def _json_safe(body: dict) -> dict:
    return json.loads(json.dumps(body, default=str))


@require_POST
@trustless_work_api
def send_transaction(request):
    signed = request.json.get("signedXdr")
    if not signed:
        raise EscrowRuleError("VALIDATION_ERROR", "signedXdr is required")
    try:
        record = chain_submit(envelope_xdr=signed)
    except TransactionRejected as rejected:
        # Horizon's result codes passed on (a fee bump's inner code is only there).
        return respond(
            {"status": "FAILED", "message": rejected.code, "extras": {"result_codes": rejected.result_codes}}, 400
        )
    if not record.successful:
        codes = record.result_codes.get("operations") or [record.result_codes.get("transaction")]
        failed = {"status": "FAILED", "message": codes[-1]}
        if not codes[-1].startswith(("op_", "tx_")):  # the contract refused the call when it was applied
            failed["error"] = codes[-1]
        return respond(failed, 400)
    from stellar_sdk import TransactionBuilder

    envelope = TransactionBuilder.from_xdr(signed, network_passphrase())
    inner = getattr(envelope.transaction, "inner_transaction_envelope", envelope)
    data = {"status": "SUCCESS", "message": "The transaction has been successfully sent to the Stellar network"}
    escrow = SandboxEscrow.objects.filter(deploy_tx_hash=inner.hash_hex()).first()  # the hash it was applied under
    if escrow is not None:
        data |= {"contractId": escrow.contract_id, "escrow": escrow_json(escrow)}
    return respond(data)


def escrow_json(escrow: SandboxEscrow) -> dict:
    milestones = []
    for milestone in escrow.milestones:
        shown = dict(milestone)
        if "amount" in shown:
            shown["amount"] = stroops_to_units(shown["amount"])
        milestones.append(shown)
    data = {
        "contractId": escrow.contract_id,
        "signer": escrow.signer,
        "engagementId": escrow.engagement_id,
        "title": escrow.title,
        "description": escrow.description,
        "roles": escrow.roles,
        "platformFee": escrow.platform_fee,
        "balance": stroops_to_units(escrow.balance),
        "milestones": milestones,
        "trustline": escrow.trustline,
        "receiverMemo": escrow.receiver_memo,
    }
    if escrow.type == "single-release":
        data |= {"amount": stroops_to_units(escrow.amount), "flags": escrow.flags}
    return data


@require_GET
@trustless_work_api
def get_escrows_by_contract_ids(request):
    ids = request.GET.getlist("contractIds[]") or request.GET.getlist("contractIds")
    if not ids:
        raise EscrowRuleError("VALIDATION_ERROR", "contractIds[] is required")
    escrows = SandboxEscrow.objects.filter(contract_id__in=ids, indexed=True)
    return respond([escrow_json(escrow) for escrow in escrows])


PAGE_SIZE = 10
STATUSES = ("working", "pendingRelease", "released", "resolved", "inDispute")


def escrow_status(escrow: SandboxEscrow) -> str:
    """Trustless Work's status filter values, derived from the contract's flags."""
    milestone_flags = [m.get("flags", {}) for m in escrow.milestones] if escrow.type == "multi-release" else []
    flags = escrow.flags
    if flags.get("released") or (milestone_flags and all(f.get("released") for f in milestone_flags)):
        return "released"
    if flags.get("resolved") or (milestone_flags and all(f.get("resolved") for f in milestone_flags)):
        return "resolved"
    if flags.get("disputed") or any(f.get("disputed") for f in milestone_flags):
        return "inDispute"
    approved = (
        [m.get("approved") for m in escrow.milestones]
        if not milestone_flags
        else [f.get("approved") for f in milestone_flags]
    )
    return "pendingRelease" if all(approved) else "working"


def _filtered(request, escrows) -> HttpResponse:
    if engagement_id := request.GET.get("engagementId"):
        escrows = escrows.filter(engagement_id=engagement_id)
    escrows = [escrow for escrow in escrows.filter(indexed=True).order_by("-created_at")]
    if status := request.GET.get("status"):
        if status not in STATUSES:
            raise EscrowRuleError("VALIDATION_ERROR", f"status must be one of {', '.join(STATUSES)}")
        escrows = [escrow for escrow in escrows if escrow_status(escrow) == status]
    page = request.GET.get("page", "1")
    if not page.isdigit() or int(page) < 1:
        raise EscrowRuleError("VALIDATION_ERROR", "page must be a positive integer")
    start = (int(page) - 1) * PAGE_SIZE
    return respond([escrow_json(escrow) for escrow in escrows[start : start + PAGE_SIZE]])


@require_GET
@trustless_work_api
def get_escrows_by_signer(request):
    signer = request.GET.get("signer")
    if not signer:
        raise EscrowRuleError("VALIDATION_ERROR", "signer is required")
    return _filtered(request, SandboxEscrow.objects.filter(signer=signer))


@require_GET
@trustless_work_api
def get_escrows_by_role(request):
    role, address = request.GET.get("role"), request.GET.get("roleAddress")
    names = ("approver", "serviceProvider", "platformAddress", "releaseSigner", "disputeResolver", "receiver")
    if role not in names or not address:
        raise EscrowRuleError("VALIDATION_ERROR", f"role (one of {', '.join(names)}) and roleAddress are required")
    return _filtered(request, SandboxEscrow.objects.filter(**{f"roles__{role}": address}))


@require_GET
@trustless_work_api
def get_multiple_escrow_balance(request, escrow_type):
    addresses = request.GET.getlist("addresses[]") or request.GET.getlist("addresses")
    if not addresses:
        raise EscrowRuleError("VALIDATION_ERROR", "addresses[] is required")
    found = {e.contract_id: e for e in SandboxEscrow.objects.filter(contract_id__in=addresses, type=escrow_type)}
    return respond(
        [
            {"address": address, "balance": stroops_to_units(found[address].balance)}
            for address in addresses
            if address in found
        ]
    )


@require_POST
@trustless_work_api
def indexer_update_from_tx_hash(request):
    tx_hash = request.json.get("txHash")
    if not tx_hash:
        raise EscrowRuleError("VALIDATION_ERROR", "txHash is required")
    with transaction.atomic():
        updated = SandboxEscrow.objects.filter(deploy_tx_hash__in=_inner_hashes(tx_hash)).update(indexed=True)
    if not updated:
        return _error(404, "No escrow was deployed by that transaction")
    return respond({"status": "SUCCESS", "message": "Escrow indexed"})


def _inner_hashes(tx_hash: str) -> list[str]:
    """A deploy is keyed by its inner transaction's hash; a caller may quote the fee-bump's."""
    from stellar_sdk import TransactionBuilder

    from sandbox.models import SandboxTransaction

    hashes = [tx_hash]
    record = SandboxTransaction.objects.filter(hash=tx_hash).first()
    if record is not None and record.envelope_xdr:
        envelope = TransactionBuilder.from_xdr(record.envelope_xdr, network_passphrase())
        inner = getattr(envelope.transaction, "inner_transaction_envelope", None)
        if inner is not None:
            hashes.append(inner.hash_hex())
    return hashes
