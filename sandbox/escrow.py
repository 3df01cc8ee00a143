"""A Trustless Work (API v1) escrow engine over the sandbox ledger.

Each write endpoint checks the contract's rules against the current state, then hands out
a real unsigned transaction: one contract invocation from the signer's account, whose
arguments (a map of typed values: addresses, i128 stroops, strings) say exactly what was
asked, so a client can verify it before signing. When the signed transaction comes back
through /helper/send-transaction, the chain engine checks sequence, signatures and fees
and calls `escrow_apply` for the invocation, which re-checks the rules and moves USDC on
the same ledger the sandbox Horizon serves.

Fees at release: Trustless Work 0.3 % and the platform fee %, each rounded down to the
stroop; the receiver gets the rest. Resolutions pay each distribution's fees pro rata.
"""

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db.models import F
from stellar_sdk import StrKey, TransactionBuilder, scval
from stellar_sdk import xdr as stellar_xdr

from sandbox.chain import BASE_FEE, MAX_INT64, STROOPS_PER_UNIT, OperationFailed, chain_genesis
from sandbox.models import SandboxAccount, SandboxEscrow, SandboxEscrowCall, SandboxTrustline

TRUSTLESS_WORK_FEE_BPS = 30  # 0.3 %
MAX_MILESTONES = 50
MAX_DISTRIBUTIONS = 50
# Well-known sandbox addresses: the deployer contract and the account receiving Trustless Work's fee.
DEPLOYER_CONTRACT = StrKey.encode_contract(hashlib.sha256(b"offerhub-sandbox-tw-deployer").digest())
TRUSTLESS_WORK_FEE_ACCOUNT = StrKey.encode_ed25519_public_key(hashlib.sha256(b"offerhub-sandbox-tw-fees").digest())

ROLE_NAMES_SINGLE = ("approver", "serviceProvider", "platformAddress", "releaseSigner", "disputeResolver", "receiver")
ROLE_NAMES_MULTI = ROLE_NAMES_SINGLE[:-1]
# What update-escrow may change; the order's identity and asset stay as deployed.
UPDATABLE_FIELDS = ("title", "description", "milestones", "roles", "platformFee", "amount")


class EscrowRuleError(Exception):
    """A request or call the contract refuses; `code` mirrors Trustless Work's error names."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code
        self.message = message or code


def _number(value, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, TypeError):
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} must be a number") from None
    if not number.is_finite():  # "Infinity" parses, but is no amount
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} must be a number")
    return number


def units_to_stroops(value, field: str) -> int:
    amount = _number(value, field) * STROOPS_PER_UNIT
    if amount != amount.to_integral_value():
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} has more than 7 decimals")
    if abs(amount) > MAX_INT64:  # no trustline, and no column, holds more
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} is too large")
    return int(amount)


def stroops_to_units(stroops: int) -> Decimal:
    return Decimal(stroops) / STROOPS_PER_UNIT


def fees_for(amount: int, platform_fee_percent: Decimal) -> tuple[int, int]:
    """(Trustless Work fee, platform fee) in stroops, each rounded down."""
    trustless = amount * TRUSTLESS_WORK_FEE_BPS // 10_000
    platform = int(Decimal(amount) * platform_fee_percent / 100)
    return trustless, platform


def _require(body: dict, *names: str) -> None:
    missing = [name for name in names if body.get(name) in (None, "")]
    if missing:
        raise EscrowRuleError("VALIDATION_ERROR", f"missing field(s): {', '.join(missing)}")


def _address(value, field: str) -> str:
    if not isinstance(value, str) or not StrKey.is_valid_ed25519_public_key(value):
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} must be a Stellar address")
    return value


def _objects(value, field: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} must be a list of objects")
    return value


def _any_flag_set(flags, field: str) -> bool:
    if flags is None:
        return False
    if not isinstance(flags, dict):
        raise EscrowRuleError("VALIDATION_ERROR", f"{field} must be an object")
    return any(flags.values())


def _milestone_index(escrow: SandboxEscrow, body: dict) -> int:
    raw = body.get("milestoneIndex")
    if not isinstance(raw, str) or not raw.isdigit():
        raise EscrowRuleError("VALIDATION_ERROR", 'milestoneIndex must be a string such as "0"')
    index = int(raw)
    if index >= len(escrow.milestones):
        raise EscrowRuleError("ESCROW_MILESTONE_NOT_FOUND", f"milestone {raw} does not exist")
    return index


# --- Deploy --------------------------------------------------------------------------


def deploy_params(escrow_type: str, body: dict) -> dict:
    """Validate a deploy body; returns the normalised contract state to create."""
    _require(body, "signer", "engagementId", "title", "description", "roles", "milestones", "trustline")
    signer = _address(body["signer"], "signer")
    if body.get("platformFee") is None:
        raise EscrowRuleError("VALIDATION_ERROR", "missing field(s): platformFee")
    platform_fee = _number(body["platformFee"], "platformFee")
    if not Decimal(0) <= platform_fee <= Decimal(99):
        raise EscrowRuleError("ESCROW_PLATFORM_FEE_TOO_HIGH", "platformFee must be a percent from 0 to 99")
    if platform_fee != platform_fee.quantize(Decimal("0.01")):  # the fee column keeps two decimals
        raise EscrowRuleError("VALIDATION_ERROR", "platformFee has at most 2 decimals")
    if len(str(body["engagementId"])) > 200:  # the sandbox's column; longer ones crashed the deploy
        raise EscrowRuleError("VALIDATION_ERROR", "engagementId is at most 200 characters")
    if len(str(body["title"])) > 100 or len(str(body["description"])) > 500:
        raise EscrowRuleError("VALIDATION_ERROR", "title is at most 100 and description 500 characters")
    names = ROLE_NAMES_SINGLE if escrow_type == "single-release" else ROLE_NAMES_MULTI
    roles = body["roles"]
    if not isinstance(roles, dict):
        raise EscrowRuleError("VALIDATION_ERROR", "roles must be an object")
    roles = {name: _address(roles.get(name), f"roles.{name}") for name in names}
    milestones = _objects(body["milestones"], "milestones")
    if not milestones:
        raise EscrowRuleError("VALIDATION_ERROR", "at least one milestone is required")
    if len(milestones) > MAX_MILESTONES:
        raise EscrowRuleError("ESCROW_TOO_MANY_MILESTONES", f"at most {MAX_MILESTONES} milestones")
    milestone_flags = [m.get("flags") for m in milestones] + [{"approved": m.get("approved")} for m in milestones]
    if _any_flag_set(body.get("flags"), "flags") or any(
        _any_flag_set(f, "milestones[].flags") for f in milestone_flags
    ):
        raise EscrowRuleError("ESCROW_FLAGS_MUST_BE_FALSE", "flags must all be false")
    trustline = body["trustline"]
    if not isinstance(trustline, dict) or trustline.get("address") != settings.STELLAR_USDC_ISSUER:
        raise EscrowRuleError("VALIDATION_ERROR", "trustline.address must be the USDC issuer")
    state = {
        "signer": signer,
        "engagementId": str(body["engagementId"]),
        "title": str(body["title"]),
        "description": str(body["description"]),
        "roles": roles,
        "platformFee": str(platform_fee),
        "trustline": {"address": trustline["address"], "name": trustline.get("symbol") or "USDC"},
        "receiverMemo": _memo(body.get("receiverMemo")),
    }
    if escrow_type == "single-release":
        _require(body, "amount")
        amount = units_to_stroops(body["amount"], "amount")
        if amount <= 0:
            raise EscrowRuleError("ESCROW_AMOUNT_CANNOT_BE_ZERO", "amount must be greater than 0")
        state["amount"] = amount
        state["milestones"] = [
            {"description": str(m.get("description", "")), "status": "pending", "evidence": "", "approved": False}
            for m in milestones
        ]
    else:
        parsed = []
        for number, milestone in enumerate(milestones):
            amount = units_to_stroops(milestone.get("amount"), f"milestones[{number}].amount")
            if amount <= 0:
                raise EscrowRuleError("ESCROW_AMOUNT_CANNOT_BE_ZERO", f"milestones[{number}].amount must be > 0")
            parsed.append(
                {
                    "description": str(milestone.get("description", "")),
                    "status": "pending",
                    "evidence": "",
                    "amount": amount,
                    "receiver": _address(milestone.get("receiver"), f"milestones[{number}].receiver"),
                    "flags": {"disputed": False, "released": False, "resolved": False, "approved": False},
                }
            )
        state["milestones"] = parsed
    return state


def _memo(value) -> int:
    memo = _number(value or 0, "receiverMemo")
    if memo != memo.to_integral_value() or not 0 <= memo <= MAX_INT64:
        raise EscrowRuleError("VALIDATION_ERROR", "receiverMemo must be a whole number of at most 19 digits")
    return int(memo)


# --- Rules of the other calls (checked when preparing and again when applying) --------


def _not_finished(escrow: SandboxEscrow) -> None:
    if escrow.flags.get("released"):
        raise EscrowRuleError("ESCROW_ALREADY_RELEASED", "the escrow was released")
    if escrow.flags.get("resolved"):
        raise EscrowRuleError("ESCROW_ALREADY_RESOLVED", "the escrow's dispute was resolved")


def check_call(escrow: SandboxEscrow, action: str, signer: str, body: dict) -> dict:
    """Raise EscrowRuleError if the contract refuses; return the normalised arguments."""
    roles = escrow.roles
    multi = escrow.type == "multi-release"
    if action == "fund":
        amount = units_to_stroops(body.get("amount"), "amount")
        if amount <= 0:
            raise EscrowRuleError("ESCROW_AMOUNT_CANNOT_BE_ZERO", "amount must be greater than 0")
        _not_finished(escrow)
        line = SandboxTrustline.objects.filter(
            account_id=signer, asset_code="USDC", asset_issuer=settings.STELLAR_USDC_ISSUER
        ).first()
        if line is None or line.balance < amount:
            raise EscrowRuleError("ESCROW_INSUFFICIENT_FUNDS", "the signer's USDC balance is too low")
        return {"amount": amount}
    if action == "change-milestone-status":
        if signer != roles["serviceProvider"]:
            raise EscrowRuleError(
                "ESCROW_ONLY_SERVICE_PROVIDER_CHANGE_MILESTONE_STATUS",
                "only the service provider can change a milestone's status",
            )
        index = _milestone_index(escrow, body)
        _not_finished(escrow)
        if multi and (escrow.milestones[index]["flags"]["released"] or escrow.milestones[index]["flags"]["resolved"]):
            raise EscrowRuleError("ESCROW_MILESTONE_ALREADY_RELEASED", "that milestone is finished")
        _require(body, "newStatus")
        return {"index": index, "status": str(body["newStatus"]), "evidence": str(body.get("newEvidence") or "")}
    if action == "approve-milestone":
        if signer != roles["approver"]:
            raise EscrowRuleError("ESCROW_ONLY_APPROVER_CHANGE_MILESTONE_FLAG", "only the approver can approve")
        index = _milestone_index(escrow, body)
        _not_finished(escrow)
        approved = escrow.milestones[index]["flags"]["approved"] if multi else escrow.milestones[index]["approved"]
        if approved:
            raise EscrowRuleError("ESCROW_MILESTONE_ALREADY_APPROVED", "that milestone is already approved")
        return {"index": index}
    if action in ("release-funds", "release-milestone-funds"):
        if signer != roles["releaseSigner"]:
            raise EscrowRuleError("ESCROW_ONLY_RELEASE_SIGNER_CAN_RELEASE", "only the release signer can release")
        if not multi:
            if escrow.flags.get("disputed"):
                raise EscrowRuleError("ESCROW_OPENED_FOR_DISPUTE", "the escrow is in dispute")
            _not_finished(escrow)
            if not all(m["approved"] for m in escrow.milestones):
                raise EscrowRuleError("ESCROW_NOT_COMPLETED", "every milestone must be approved")
            if escrow.balance < escrow.amount:
                raise EscrowRuleError("ESCROW_BALANCE_NOT_ENOUGH_TO_RELEASE", "the escrow holds less than its amount")
            return {"amount": escrow.amount}
        index = _milestone_index(escrow, body)
        milestone = escrow.milestones[index]
        if milestone["flags"]["disputed"]:
            raise EscrowRuleError("ESCROW_OPENED_FOR_DISPUTE", "that milestone is in dispute")
        if milestone["flags"]["released"] or milestone["flags"]["resolved"]:
            raise EscrowRuleError("ESCROW_MILESTONE_ALREADY_RELEASED", "that milestone is finished")
        if not milestone["flags"]["approved"]:
            raise EscrowRuleError("ESCROW_NOT_COMPLETED", "the milestone must be approved")
        if escrow.balance < milestone["amount"]:
            raise EscrowRuleError("ESCROW_BALANCE_NOT_ENOUGH_TO_RELEASE", "the escrow holds less than the milestone")
        return {"index": index, "amount": milestone["amount"]}
    if action in ("dispute-escrow", "dispute-milestone"):
        if signer == roles["disputeResolver"]:
            raise EscrowRuleError("ESCROW_DISPUTE_RESOLVER_CANNOT_DISPUTE", "the dispute resolver cannot dispute")
        if signer not in roles.values():
            raise EscrowRuleError("ESCROW_UNAUTHORIZED_TO_CHANGE_DISPUTE_FLAG", "only a role of the escrow can dispute")
        if not multi:
            _not_finished(escrow)
            if escrow.flags.get("disputed"):
                raise EscrowRuleError("ESCROW_ALREADY_IN_DISPUTE", "the escrow is already in dispute")
            return {}
        index = _milestone_index(escrow, body)
        flags = escrow.milestones[index]["flags"]
        if flags["disputed"]:
            raise EscrowRuleError("ESCROW_ALREADY_IN_DISPUTE", "that milestone is already in dispute")
        if flags["released"] or flags["resolved"]:
            raise EscrowRuleError("ESCROW_MILESTONE_ALREADY_RELEASED", "that milestone is finished")
        return {"index": index}
    if action in ("resolve-dispute", "resolve-milestone-dispute"):
        if signer != roles["disputeResolver"]:
            raise EscrowRuleError(
                "ESCROW_ONLY_DISPUTE_RESOLVER_CAN_EXECUTE_THIS_FUNCTION", "only the dispute resolver can resolve"
            )
        parsed = _distributions(body)
        total = sum(item["amount"] for item in parsed)
        if not multi:
            if not escrow.flags.get("disputed"):
                raise EscrowRuleError("ESCROW_NOT_IN_DISPUTE", "the escrow is not in dispute")
            if total != escrow.balance:
                raise EscrowRuleError(
                    "ESCROW_DISTRIBUTIONS_MUST_EQUAL_BALANCE",
                    "distributions must add up to the escrow's balance exactly",
                )
            return {"distributions": parsed}
        index = _milestone_index(escrow, body)
        milestone = escrow.milestones[index]
        if not milestone["flags"]["disputed"]:
            raise EscrowRuleError("ESCROW_NOT_IN_DISPUTE", "that milestone is not in dispute")
        if total > milestone["amount"] or total > escrow.balance:
            raise EscrowRuleError(
                "ESCROW_DISTRIBUTIONS_EXCEED_AMOUNT", "distributions exceed the milestone's amount or the balance"
            )
        return {"index": index, "distributions": parsed}
    if action == "update-escrow":
        return _update_rules(escrow, signer, body)
    if action == "withdraw-remaining-funds":
        if signer != roles["disputeResolver"]:
            raise EscrowRuleError(
                "ESCROW_ONLY_DISPUTE_RESOLVER_CAN_EXECUTE_THIS_FUNCTION", "only the dispute resolver can withdraw"
            )
        parsed = _distributions(body)
        if not all(m["flags"]["released"] or m["flags"]["resolved"] for m in escrow.milestones):
            raise EscrowRuleError("ESCROW_NOT_FULLY_PROCESSED", "every milestone must be released or resolved first")
        if escrow.balance <= 0:
            raise EscrowRuleError("ESCROW_INSUFFICIENT_FUNDS_TO_MAKE_THE_REFUND", "the escrow holds nothing")
        if sum(item["amount"] for item in parsed) > escrow.balance:
            raise EscrowRuleError(
                "ESCROW_INSUFFICIENT_FUNDS_FOR_RESOLUTION", "distributions exceed the escrow's balance"
            )
        return {"distributions": parsed}
    raise EscrowRuleError("VALIDATION_ERROR", f"unknown action {action}")


def _distributions(body: dict) -> list[dict]:
    """1 to 50 `{address, amount}`, each amount > 0, in stroops."""
    distributions = body.get("distributions")
    if not isinstance(distributions, list) or not distributions:
        raise EscrowRuleError("VALIDATION_ERROR", "distributions must be a non-empty list")
    if len(distributions) > MAX_DISTRIBUTIONS:
        raise EscrowRuleError("ESCROW_TOO_MANY_DISTRIBUTIONS", f"at most {MAX_DISTRIBUTIONS} distributions")
    parsed = []
    for number, item in enumerate(_objects(distributions, "distributions")):
        amount = units_to_stroops(item.get("amount"), f"distributions[{number}].amount")
        if amount <= 0:
            raise EscrowRuleError("ESCROW_AMOUNT_CANNOT_BE_ZERO", "every distribution must be greater than 0")
        parsed.append({"address": _address(item.get("address"), f"distributions[{number}].address"), "amount": amount})
    return parsed


def _update_rules(escrow: SandboxEscrow, signer: str, body: dict) -> dict:
    """update-escrow: the platform rewrites the terms while nothing is funded, approved or disputed."""
    if signer != escrow.roles["platformAddress"]:
        raise EscrowRuleError(
            "ESCROW_ONLY_PLATFORM_ADDRESS_CAN_EXECUTE_THIS_FUNCTION", "only the platform address can update the escrow"
        )
    changes = body.get("escrow")
    if not isinstance(changes, dict) or not changes:
        raise EscrowRuleError("VALIDATION_ERROR", "escrow must be an object holding the properties to change")
    multi = escrow.type == "multi-release"
    _not_finished(escrow)
    milestone_flags = [m["flags"] if multi else {"approved": m["approved"]} for m in escrow.milestones]
    if escrow.flags.get("disputed") or any(f.get("disputed") for f in milestone_flags):
        raise EscrowRuleError("ESCROW_OPENED_FOR_DISPUTE", "an escrow in dispute cannot be updated")
    if any(f.get("released") or f.get("resolved") for f in milestone_flags):
        raise EscrowRuleError(
            "ESCROW_MILESTONE_ALREADY_RELEASED", "an escrow with a finished milestone cannot be updated"
        )
    if any(f["approved"] for f in milestone_flags):
        raise EscrowRuleError(
            "ESCROW_MILESTONE_APPROVED_CANT_CHANGE_ESCROW_PROPERTIES",
            "an escrow with an approved milestone cannot be updated",
        )
    if escrow.balance > 0:
        raise EscrowRuleError("ESCROW_HAS_FUNDS", "a funded escrow cannot be updated")
    fixed = {
        "engagementId": escrow.engagement_id,
        "trustline": escrow.trustline["address"],
        "receiverMemo": escrow.receiver_memo,
    }
    for name, kept in fixed.items():  # may be echoed back, never changed
        given = changes.get(name)
        if isinstance(given, dict):  # the trustline object
            given = given.get("address")
        if given is not None and str(given) != str(kept):
            raise EscrowRuleError("VALIDATION_ERROR", f"escrow.{name} cannot be updated")
    # The current terms in deploy's shape, overlaid with the changes, pass deploy's validation.
    current = {
        "signer": escrow.signer,
        "engagementId": escrow.engagement_id,
        "title": escrow.title,
        "description": escrow.description,
        "roles": escrow.roles,
        "platformFee": escrow.platform_fee,
        "amount": stroops_to_units(escrow.amount),
        "milestones": [
            {"description": m["description"]}
            | ({"amount": stroops_to_units(m["amount"]), "receiver": m["receiver"]} if multi else {})
            for m in escrow.milestones
        ],
        "trustline": {"address": escrow.trustline["address"], "symbol": escrow.trustline["name"]},
        "receiverMemo": escrow.receiver_memo,
    }
    updates = {name: value for name, value in changes.items() if name in (*UPDATABLE_FIELDS, "flags")}
    if isinstance(updates.get("roles"), dict):  # a role left out keeps its address
        updates["roles"] = escrow.roles | updates["roles"]
    state = deploy_params(escrow.type, current | updates)
    # Status and evidence are the service provider's: the platform's update keeps them, by index.
    for old, new in zip(escrow.milestones, state["milestones"], strict=False):
        new["status"], new["evidence"] = old["status"], old["evidence"]
    return {"escrow": state} | ({} if multi else {"amount": state["amount"]})


# --- Moving USDC on the sandbox ledger ---------------------------------------------------


def _pay_out(escrow: SandboxEscrow, recipient: str, amount: int) -> dict:
    """Pay `amount` out of the escrow to `recipient`, less the fees; returns the split."""
    trustless_fee, platform_fee = fees_for(amount, escrow.platform_fee)
    net = amount - trustless_fee - platform_fee
    _credit(TRUSTLESS_WORK_FEE_ACCOUNT, trustless_fee)
    _credit(escrow.roles["platformAddress"], platform_fee)
    _credit(recipient, net)
    escrow.balance -= amount
    return {
        "address": recipient,
        "gross": amount,
        "net": net,
        "trustlessWorkFee": trustless_fee,
        "platformFee": platform_fee,
    }


def _credit(account_id: str, amount: int) -> None:
    if amount <= 0:
        return
    if account_id == TRUSTLESS_WORK_FEE_ACCOUNT:
        chain_genesis()
        SandboxAccount.objects.get_or_create(account_id=account_id, defaults={"xlm_balance": 10**9})
        SandboxTrustline.objects.get_or_create(
            account_id=account_id,
            asset_code="USDC",
            asset_issuer=settings.STELLAR_USDC_ISSUER,
            defaults={"limit": 2**63 - 1},
        )
    updated = SandboxTrustline.objects.filter(
        account_id=account_id, asset_code="USDC", asset_issuer=settings.STELLAR_USDC_ISSUER
    ).update(balance=F("balance") + amount)
    if not updated:
        raise EscrowRuleError("ESCROW_RECEIVER_HAS_NO_TRUSTLINE", f"{account_id} cannot receive USDC")


def escrow_apply(*, escrow: SandboxEscrow, action: str, signer: str, arguments: dict) -> dict:
    """Apply a checked call to the contract's state. Returns what the call did."""
    multi = escrow.type == "multi-release"
    result: dict = {}
    if action == "fund":
        SandboxTrustline.objects.filter(
            account_id=signer, asset_code="USDC", asset_issuer=settings.STELLAR_USDC_ISSUER
        ).update(balance=F("balance") - arguments["amount"])
        escrow.balance += arguments["amount"]
    elif action == "change-milestone-status":
        milestone = escrow.milestones[arguments["index"]]
        milestone["status"] = arguments["status"]
        milestone["evidence"] = arguments["evidence"]
    elif action == "approve-milestone":
        milestone = escrow.milestones[arguments["index"]]
        if multi:
            milestone["flags"]["approved"] = True
        else:
            milestone["approved"] = True
    elif action == "release-funds":
        result["payouts"] = [_pay_out(escrow, escrow.roles["receiver"], arguments["amount"])]
        escrow.flags["released"] = True
    elif action == "release-milestone-funds":
        milestone = escrow.milestones[arguments["index"]]
        result["payouts"] = [_pay_out(escrow, milestone["receiver"], arguments["amount"])]
        milestone["flags"]["released"] = True
    elif action == "dispute-escrow":
        escrow.flags["disputed"] = True
    elif action == "dispute-milestone":
        escrow.milestones[arguments["index"]]["flags"]["disputed"] = True
    elif action == "update-escrow":
        state = arguments["escrow"]
        escrow.title, escrow.description, escrow.roles = state["title"], state["description"], state["roles"]
        escrow.platform_fee, escrow.milestones = Decimal(state["platformFee"]), state["milestones"]
        escrow.amount = state.get("amount", 0)
    elif action in ("resolve-dispute", "resolve-milestone-dispute", "withdraw-remaining-funds"):
        result["payouts"] = [_pay_out(escrow, d["address"], d["amount"]) for d in arguments["distributions"]]
        if action == "resolve-milestone-dispute":
            flags = escrow.milestones[arguments["index"]]["flags"]
            flags["disputed"], flags["resolved"] = False, True
        elif action == "resolve-dispute":
            escrow.flags["disputed"], escrow.flags["resolved"] = False, True
    escrow.save()
    return result


# --- Transactions ---------------------------------------------------------------------


def call_arguments(params: dict) -> stellar_xdr.SCVal:
    """The call's arguments as one SCVal map: addresses, i128 stroops and strings."""
    entries = {}
    for key in sorted(params):
        value = params[key]
        if isinstance(value, int) and not isinstance(value, bool):
            encoded = scval.to_int128(value)
        elif isinstance(value, str) and (StrKey.is_valid_ed25519_public_key(value) or StrKey.is_valid_contract(value)):
            encoded = scval.to_address(value)
        else:
            encoded = scval.to_string(json.dumps(value, sort_keys=True, default=str))
        entries[scval.to_symbol(key)] = encoded
    return scval.to_map(entries)


def build_unsigned(*, signer: str, contract_id: str, function: str, params: dict) -> tuple[str, str, str]:
    """(unsigned transaction XDR, its hash, its hash without the sequence number) invoking
    `function` on `contract_id` from `signer`."""
    account = SandboxAccount.objects.filter(account_id=signer).first()
    if account is None:
        raise EscrowRuleError("VALIDATION_ERROR", f"the signer {signer} does not exist on the network")
    from stellar_sdk import Account

    tx = (
        TransactionBuilder(Account(signer, account.sequence), settings.STELLAR_NETWORK_PASSPHRASE, base_fee=BASE_FEE)
        .append_invoke_contract_function_op(contract_id, function.replace("-", "_"), [call_arguments(params)])
        .set_timeout(300)
        .build()
    )
    from sandbox.chain import sequence_free_hash

    return tx.to_xdr(), tx.hash_hex(), sequence_free_hash(tx)


def new_contract_id(deploy_hash: str) -> str:
    return StrKey.encode_contract(hashlib.sha256(f"offerhub-sandbox-escrow:{deploy_hash}".encode()).digest())


def apply_invocation(
    *, tx_hash: str, op_source: str, contract_id: str, function: str, index: int, call_key: str = ""
) -> None:
    """Called by the chain engine for an invoke_host_function operation it is applying."""
    calls = SandboxEscrowCall.objects.select_for_update().filter(applied_at__isnull=True)
    call = calls.filter(tx_hash=tx_hash).first()
    if call is None and call_key:  # handed out, then signed with another sequence number
        call = calls.filter(call_key=call_key).order_by("created_at").first()
    if call is None:
        raise OperationFailed(index, "op_not_supported")  # not a transaction this sandbox handed out
    expected_contract = call.contract_id or DEPLOYER_CONTRACT
    if op_source != call.signer or contract_id != expected_contract or function != _function_name(call):
        raise OperationFailed(index, "op_malformed")
    from django.utils import timezone

    try:
        if call.action.startswith("deploy"):
            state = call.params
            escrow = SandboxEscrow.objects.create(
                contract_id=new_contract_id(tx_hash),
                type=call.escrow_type,
                engagement_id=state["engagementId"],
                title=state["title"],
                description=state["description"],
                signer=state["signer"],
                roles=state["roles"],
                amount=state.get("amount", 0),
                platform_fee=Decimal(state["platformFee"]),
                milestones=state["milestones"],
                flags={"disputed": False, "released": False, "resolved": False, "approved": False},
                trustline=state["trustline"],
                receiver_memo=state["receiverMemo"],
                deploy_tx_hash=tx_hash,
                indexed=not settings.SANDBOX_TRUSTLESS_WORK_INDEXER_LAG,
            )
            result = {"contractId": escrow.contract_id}
        else:
            escrow = SandboxEscrow.objects.select_for_update().get(contract_id=call.contract_id)
            arguments = check_call(escrow, call.action, call.signer, call.params)
            result = escrow_apply(escrow=escrow, action=call.action, signer=call.signer, arguments=arguments)
    except EscrowRuleError as refused:
        raise OperationFailed(index, refused.code) from None
    call.applied_at = timezone.now()
    call.result = result
    call.save(update_fields=["applied_at", "result"])


def _function_name(call: SandboxEscrowCall) -> str:
    return re.sub(r"[^a-z_]", "_", call.action.replace("-", "_"))
