"""A small Stellar ledger: decodes real transaction XDR, checks it as stellar-core would
(sequence numbers, signatures, fees, reserves, trustlines, sponsorships) and applies it.

Supported operations: create_account, change_trust, payment,
begin/end_sponsoring_future_reserves; fee-bump envelopes. Anything else fails with
`op_not_supported`. A transaction that fails in its operations still consumes its
sequence number and fee, as on the real network; one rejected before that (bad
sequence, bad signature, low fee) changes nothing.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from stellar_sdk import (
    Address,
    BeginSponsoringFutureReserves,
    ChangeTrust,
    CreateAccount,
    EndSponsoringFutureReserves,
    FeeBumpTransactionEnvelope,
    HashMemo,
    IdMemo,
    InvokeHostFunction,
    Keypair,
    NoneMemo,
    Payment,
    ReturnHashMemo,
    StrKey,
    TextMemo,
    TransactionBuilder,
)
from stellar_sdk.exceptions import BadSignatureError

from sandbox.models import SandboxAccount, SandboxLedgerState, SandboxPayment, SandboxTransaction, SandboxTrustline

STROOPS_PER_UNIT = 10_000_000
BASE_FEE = 100
BASE_RESERVE = STROOPS_PER_UNIT // 2
MAX_INT64 = 2**63 - 1
FRIENDBOT_STARTING_BALANCE = 10_000 * STROOPS_PER_UNIT
# The friendbot's own account: a well-known key of the sandbox, with a practically endless balance.
FRIENDBOT_ACCOUNT = Keypair.from_raw_ed25519_seed(hashlib.sha256(b"offerhub-sandbox-friendbot").digest()).public_key


class TransactionRejected(Exception):
    """Rejected before reaching the ledger: nothing is charged (Horizon answers 400)."""

    def __init__(self, code: str, detail: str, *, inner_code: str = ""):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.inner_code = inner_code  # a fee bump refused for its inner transaction: the inner's code

    @property
    def result_codes(self) -> dict:
        """As Horizon gives them in `extras.result_codes`."""
        return {"transaction": self.code} | ({"inner_transaction": self.inner_code} if self.inner_code else {})


class OperationFailed(Exception):
    def __init__(self, index: int, code: str):
        super().__init__(code)
        self.index = index
        self.code = code


def network_passphrase() -> str:
    return settings.STELLAR_NETWORK_PASSPHRASE


def to_stroops(amount) -> int:
    value = Decimal(str(amount)) * STROOPS_PER_UNIT
    if value != value.to_integral_value():
        raise ValueError(f"{amount} has more than 7 decimals")
    return int(value)


def format_amount(stroops: int) -> str:
    return f"{Decimal(stroops) / STROOPS_PER_UNIT:.7f}"


def min_balance(account: SandboxAccount) -> int:
    return (2 + account.num_subentries + account.num_sponsoring - account.num_sponsored) * BASE_RESERVE


def available_xlm(account: SandboxAccount) -> int:
    return account.xlm_balance - min_balance(account)


def ledger_close() -> int:
    state = SandboxLedgerState.objects.select_for_update().first()
    if state is None:
        state = SandboxLedgerState.objects.create()
        state = SandboxLedgerState.objects.select_for_update().get(pk=state.pk)
    state.ledger_sequence += 1
    state.save(update_fields=["ledger_sequence"])
    return state.ledger_sequence


def usdc_issuer() -> str:
    return settings.STELLAR_USDC_ISSUER


def chain_genesis() -> None:
    """The accounts every sandbox ledger starts with: the USDC issuer and the friendbot."""
    for account_id in (usdc_issuer(), FRIENDBOT_ACCOUNT):
        SandboxAccount.objects.get_or_create(
            account_id=account_id, defaults={"xlm_balance": MAX_INT64 // 4, "sequence": 1000 << 32}
        )


@dataclass
class ApplyState:
    ledger: int
    tx_hash: bytes
    signatures: list
    accounts: dict[str, SandboxAccount]
    tx_record: SandboxTransaction
    call_key: str = ""  # the inner transaction's hash without its sequence number (sandbox.escrow)
    sponsorships: dict[str, str] = field(default_factory=dict)  # sponsored -> sponsor
    used_signatures: set[int] = field(default_factory=set)

    def account(self, account_id: str) -> SandboxAccount | None:
        if account_id not in self.accounts:
            found = SandboxAccount.objects.select_for_update().filter(account_id=account_id).first()
            if found is None:
                return None
            self.accounts[account_id] = found
        return self.accounts[account_id]


def _signature_weight(account: SandboxAccount, tx_hash: bytes, signatures, used: set[int]) -> int:
    keys = [(account.account_id, account.master_weight)] + [(s.key, s.weight) for s in account.signers.all()]
    weight = 0
    for key, key_weight in keys:
        if key_weight == 0:
            continue
        keypair = Keypair.from_public_key(key)
        for index, decorated in enumerate(signatures):
            if decorated.signature_hint != keypair.signature_hint():
                continue
            try:
                keypair.verify(tx_hash, decorated.signature)
            except BadSignatureError:
                continue
            weight += key_weight
            used.add(index)
            break
    return weight


def _authorized(account: SandboxAccount, tx_hash: bytes, signatures, used: set[int]) -> bool:
    return _signature_weight(account, tx_hash, signatures, used) >= max(1, account.med_threshold)


def sequence_free_hash(envelope) -> str:
    """A transaction's hash with its sequence number left out: the network accepts a Soroban
    call handed out by Trustless Work whose sequence number the signer rewrote before signing."""
    copy = TransactionBuilder.from_xdr(envelope.to_xdr(), network_passphrase())
    copy.transaction.sequence = 0
    return copy.hash_hex()


def chain_submit(*, envelope_xdr: str) -> SandboxTransaction:
    """Check and apply one transaction envelope; returns its record (successful or failed)."""
    try:
        envelope = TransactionBuilder.from_xdr(envelope_xdr, network_passphrase())
    except Exception as exc:
        raise TransactionRejected("tx_malformed", f"could not decode the transaction envelope: {exc}") from None
    tx_hash_hex = envelope.hash_hex()

    fee_bump = isinstance(envelope, FeeBumpTransactionEnvelope)
    inner_envelope = envelope.transaction.inner_transaction_envelope if fee_bump else envelope
    tx = inner_envelope.transaction

    def inner_refused(code: str, detail: str) -> TransactionRejected:
        """As core answers: a fee bump whose inner transaction is invalid is refused as
        tx_fee_bump_inner_failed, the inner's own code given beside it."""
        if fee_bump:
            return TransactionRejected("tx_fee_bump_inner_failed", detail, inner_code=code)
        return TransactionRejected(code, detail)

    operations = tx.operations
    if not operations:
        raise inner_refused("tx_missing_operation", "a transaction needs at least one operation")
    source_id = tx.source.account_id
    fee_source_id = envelope.transaction.fee_source.account_id if fee_bump else source_id
    required_fee = BASE_FEE * (len(operations) + (1 if fee_bump else 0))
    offered_fee = envelope.transaction.fee if fee_bump else tx.fee
    if offered_fee < required_fee:
        raise TransactionRejected("tx_insufficient_fee", f"fee {offered_fee} is below the minimum {required_fee}")
    bounds = tx.preconditions.time_bounds if tx.preconditions else None
    if bounds is not None:
        now = int(time.time())
        if bounds.min_time and now < bounds.min_time:
            raise inner_refused("tx_too_early", "the transaction's time bounds have not started")
        if bounds.max_time and now > bounds.max_time:
            raise inner_refused("tx_too_late", "the transaction's time bounds have passed")

    with transaction.atomic():
        ledger = ledger_close()  # serialises every submission
        already = SandboxTransaction.objects.filter(hash=tx_hash_hex).first()
        if already is not None and not settings.SANDBOX_HORIZON_INGEST_LAG:
            # Horizon answers a resubmission with the recorded result (once it has ingested it;
            # with the lag, core answers: the sequence number is spent, tx_bad_seq).
            transaction.set_rollback(True)  # no ledger closed for it
            return already
        wanted = sorted({source_id, fee_source_id})
        accounts = {a.account_id: a for a in SandboxAccount.objects.select_for_update().filter(account_id__in=wanted)}
        source = accounts.get(source_id)
        fee_account = accounts.get(fee_source_id)
        if fee_account is None:
            raise TransactionRejected("tx_no_source_account", "the fee source account does not exist")
        if source is None:
            raise inner_refused("tx_no_source_account", "the source account does not exist")
        if tx.sequence != source.sequence + 1:
            raise inner_refused(
                "tx_bad_seq", f"sequence {tx.sequence} is not the account's next ({source.sequence + 1})"
            )
        inner_hash = inner_envelope.hash()
        used: set[int] = set()
        if not _authorized(source, inner_hash, inner_envelope.signatures, used):
            raise inner_refused("tx_bad_auth", "the transaction is not signed by its source account")
        if fee_bump and not _authorized(fee_account, envelope.hash(), envelope.signatures, set()):
            raise TransactionRejected("tx_bad_auth", "the fee-bump envelope is not signed by its fee source")
        if fee_account.xlm_balance - required_fee < min_balance(fee_account):
            raise TransactionRejected("tx_insufficient_balance", "the fee account cannot pay the fee")

        # Fee and sequence are consumed even if an operation fails.
        fee_account.xlm_balance -= required_fee
        fee_account.save(update_fields=["xlm_balance"])
        SandboxAccount.objects.filter(pk=source_id).update(sequence=tx.sequence, last_modified_ledger=ledger)
        source.sequence = tx.sequence

        memo_type, memo = _memo(tx.memo)
        record = SandboxTransaction.objects.create(
            hash=tx_hash_hex,
            ledger=ledger,
            source_account=source_id,
            source_account_sequence=tx.sequence,
            fee_account=fee_source_id,
            fee_charged=required_fee,
            max_fee=offered_fee,
            operation_count=len(operations),
            successful=False,
            memo_type=memo_type,
            memo=memo,
            envelope_xdr=envelope_xdr,
        )
        state = ApplyState(ledger, inner_hash, inner_envelope.signatures, accounts, record)
        state.call_key = sequence_free_hash(inner_envelope)
        state.used_signatures = used
        savepoint = transaction.savepoint()
        try:
            for index, operation in enumerate(operations):
                _apply_operation(state, index, operation, source_id)
            if state.sponsorships:
                raise OperationFailed(-1, "tx_bad_sponsorship")
        except OperationFailed as failure:
            transaction.savepoint_rollback(savepoint)
            if failure.index < 0:
                record.result_codes = {"transaction": failure.code}
            else:
                codes = ["op_success"] * failure.index + [failure.code]
                record.result_codes = {"transaction": "tx_failed", "operations": codes}
            record.save(update_fields=["result_codes"])
            return record
        transaction.savepoint_commit(savepoint)
        record.successful = True
        record.result_codes = {"transaction": "tx_success", "operations": ["op_success"] * len(operations)}
        record.save(update_fields=["successful", "result_codes"])
        return record


def _memo(memo) -> tuple[str, str]:
    if memo is None or isinstance(memo, NoneMemo):
        return "none", ""
    if isinstance(memo, TextMemo):
        return "text", memo.memo_text.decode("utf-8", "replace")
    if isinstance(memo, IdMemo):
        return "id", str(memo.memo_id)
    if isinstance(memo, HashMemo | ReturnHashMemo):
        return "hash" if isinstance(memo, HashMemo) else "return", memo.memo_hash.hex()
    return "none", ""


def _apply_operation(state: ApplyState, index: int, operation, tx_source_id: str) -> None:
    op_source_id = operation.source.account_id if operation.source else tx_source_id
    op_source = state.account(op_source_id)
    if op_source is None:
        raise OperationFailed(index, "op_no_source_account")
    if op_source_id != tx_source_id and not _authorized(
        op_source, state.tx_hash, state.signatures, state.used_signatures
    ):
        raise OperationFailed(index, "op_bad_auth")
    if isinstance(operation, CreateAccount):
        _create_account(state, index, op_source, operation)
    elif isinstance(operation, ChangeTrust):
        _change_trust(state, index, op_source, operation)
    elif isinstance(operation, Payment):
        _payment(state, index, op_source, operation)
    elif isinstance(operation, BeginSponsoringFutureReserves):
        sponsored = operation.sponsored_id
        if sponsored == op_source_id:
            raise OperationFailed(index, "op_recursive")
        if sponsored in state.sponsorships:
            raise OperationFailed(index, "op_already_sponsored")
        state.sponsorships[sponsored] = op_source_id
    elif isinstance(operation, EndSponsoringFutureReserves):
        if state.sponsorships.pop(op_source_id, None) is None:
            raise OperationFailed(index, "op_not_sponsored")
    elif isinstance(operation, InvokeHostFunction) and operation.host_function.invoke_contract is not None:
        from sandbox.escrow import apply_invocation  # the escrow engine builds on this module

        invoke = operation.host_function.invoke_contract
        apply_invocation(
            tx_hash=state.tx_hash.hex(),
            call_key=state.call_key,
            op_source=op_source_id,
            contract_id=Address.from_xdr_sc_address(invoke.contract_address).address,
            function=invoke.function_name.sc_symbol.decode(),
            index=index,
        )
    else:
        raise OperationFailed(index, "op_not_supported")


def _reserve(state: ApplyState, index: int, account: SandboxAccount, entries: int) -> str:
    """Take the reserve for `entries` new ledger entries of `account`; returns the sponsor, if any."""
    sponsor_id = state.sponsorships.get(account.account_id, "")
    if sponsor_id:
        sponsor = state.account(sponsor_id)
        if available_xlm(sponsor) < entries * BASE_RESERVE:
            raise OperationFailed(index, "op_low_reserve")
        sponsor.num_sponsoring += entries
        sponsor.save(update_fields=["num_sponsoring"])
        account.num_sponsored += entries
    return sponsor_id


def _create_account(state, index, source, operation: CreateAccount) -> None:
    destination = operation.destination
    if state.account(destination) is not None:
        raise OperationFailed(index, "op_already_exists")
    starting = to_stroops(operation.starting_balance)
    new = SandboxAccount(account_id=destination, xlm_balance=starting, sequence=state.ledger << 32)
    sponsor_id = _reserve(state, index, new, 2)
    if not sponsor_id and starting < 2 * BASE_RESERVE:
        raise OperationFailed(index, "op_low_reserve")
    if available_xlm(source) < starting:
        raise OperationFailed(index, "op_underfunded")
    source.xlm_balance -= starting
    source.save(update_fields=["xlm_balance"])
    new.sponsor = sponsor_id
    new.last_modified_ledger = state.ledger
    new.save(force_insert=True)
    state.accounts[destination] = new
    SandboxPayment.objects.create(
        transaction=state.tx_record,
        type="create_account",
        source_account=source.account_id,
        from_account=source.account_id,
        to_account=destination,
        amount=starting,
    )


def _change_trust(state, index, source, operation: ChangeTrust) -> None:
    asset = operation.asset
    if getattr(asset, "is_native", lambda: False)() or not hasattr(asset, "issuer"):
        raise OperationFailed(index, "op_malformed")
    if asset.issuer == source.account_id:
        raise OperationFailed(index, "op_malformed")
    if state.account(asset.issuer) is None:
        raise OperationFailed(index, "op_no_issuer")
    limit = to_stroops(operation.limit)
    line = (
        SandboxTrustline.objects.select_for_update()
        .filter(account=source, asset_code=asset.code, asset_issuer=asset.issuer)
        .first()
    )
    if line is not None:
        if limit < line.balance:
            raise OperationFailed(index, "op_invalid_limit")
        if limit == 0:
            if line.sponsor:
                sponsor = state.account(line.sponsor)
                sponsor.num_sponsoring -= 1
                sponsor.save(update_fields=["num_sponsoring"])
                source.num_sponsored -= 1
            source.num_subentries -= 1
            source.save(update_fields=["num_subentries", "num_sponsored"])
            line.delete()
            return
        line.limit = limit
        line.last_modified_ledger = state.ledger
        line.save(update_fields=["limit", "last_modified_ledger"])
        return
    if limit == 0:
        raise OperationFailed(index, "op_invalid_limit")
    sponsor_id = _reserve(state, index, source, 1)
    source.num_subentries += 1
    if not sponsor_id and source.xlm_balance < min_balance(source):
        raise OperationFailed(index, "op_low_reserve")
    source.save(update_fields=["num_subentries", "num_sponsored"])
    SandboxTrustline.objects.create(
        account=source,
        asset_code=asset.code,
        asset_issuer=asset.issuer,
        limit=limit,
        sponsor=sponsor_id,
        last_modified_ledger=state.ledger,
    )


def _payment(state, index, source, operation: Payment) -> None:
    destination_id = operation.destination.account_id
    amount = to_stroops(operation.amount)
    if amount <= 0:
        raise OperationFailed(index, "op_malformed")
    destination = state.account(destination_id)
    if destination is None:
        raise OperationFailed(index, "op_no_destination")
    asset = operation.asset
    if asset.is_native():
        if available_xlm(source) < amount:
            raise OperationFailed(index, "op_underfunded")
        SandboxAccount.objects.filter(pk=source.pk).update(xlm_balance=F("xlm_balance") - amount)
        SandboxAccount.objects.filter(pk=destination_id).update(xlm_balance=F("xlm_balance") + amount)
        source.xlm_balance -= amount
        destination.xlm_balance += amount
    else:
        _move_credit(index, source.account_id, destination_id, asset.code, asset.issuer, amount)
    SandboxPayment.objects.create(
        transaction=state.tx_record,
        type="payment",
        source_account=source.account_id,
        from_account=source.account_id,
        to_account=destination_id,
        asset_code="" if asset.is_native() else asset.code,
        asset_issuer="" if asset.is_native() else asset.issuer,
        amount=amount,
    )


def _move_credit(index: int, from_id: str, to_id: str, code: str, issuer: str, amount: int) -> None:
    """Move an issued asset; the issuer mints when it pays and burns when it is paid."""
    lines = {
        line.account_id: line
        for line in SandboxTrustline.objects.select_for_update()
        .filter(account_id__in=sorted({from_id, to_id} - {issuer}), asset_code=code, asset_issuer=issuer)
        .order_by("account_id")
    }
    if from_id != issuer:
        source_line = lines.get(from_id)
        if source_line is None:
            raise OperationFailed(index, "op_src_no_trust")
        if source_line.balance < amount:
            raise OperationFailed(index, "op_underfunded")
    if to_id != issuer:
        destination_line = lines.get(to_id)
        if destination_line is None:
            raise OperationFailed(index, "op_no_trust")
        if destination_line.balance + amount > destination_line.limit:
            raise OperationFailed(index, "op_line_full")
    if from_id != issuer:
        SandboxTrustline.objects.filter(pk=lines[from_id].pk).update(balance=F("balance") - amount)
    if to_id != issuer:
        SandboxTrustline.objects.filter(pk=lines[to_id].pk).update(balance=F("balance") + amount)


def _synthetic_record(*, source: str, ledger: int, tx_hash: str = "", memo: str = "") -> SandboxTransaction:
    """A transaction the sandbox itself makes (friendbot, faucet): no envelope to check."""
    return SandboxTransaction.objects.create(
        hash=tx_hash or hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
        memo_type="text" if memo else "none",
        memo=memo,
        ledger=ledger,
        source_account=source,
        source_account_sequence=0,
        fee_account=source,
        fee_charged=BASE_FEE,
        max_fee=BASE_FEE,
        operation_count=1,
        successful=True,
        result_codes={"transaction": "tx_success", "operations": ["op_success"]},
        envelope_xdr="",
    )


@transaction.atomic
def chain_friendbot(*, account_id: str) -> SandboxTransaction:
    """Create and fund an account with 10,000 XLM, as testnet's friendbot does."""
    if not StrKey.is_valid_ed25519_public_key(account_id):
        raise TransactionRejected("op_malformed", "addr is not a valid Stellar account id")
    chain_genesis()
    if SandboxAccount.objects.filter(account_id=account_id).exists():
        raise TransactionRejected("op_already_exists", "the account is already funded")
    ledger = ledger_close()
    record = _synthetic_record(source=FRIENDBOT_ACCOUNT, ledger=ledger)
    SandboxAccount.objects.create(
        account_id=account_id,
        xlm_balance=FRIENDBOT_STARTING_BALANCE,
        sequence=ledger << 32,
        last_modified_ledger=ledger,
    )
    SandboxPayment.objects.create(
        transaction=record,
        type="create_account",
        source_account=FRIENDBOT_ACCOUNT,
        from_account=FRIENDBOT_ACCOUNT,
        to_account=account_id,
        amount=FRIENDBOT_STARTING_BALANCE,
    )
    return record


FAUCET_MEMO_MAX_BYTES = 28  # a Stellar text memo


def faucet_hash(*, account_id: str, memo: str) -> str:
    """The hash of a mint with a memo: fixed by (issuer, account, memo) before it is made, as
    a signed envelope's hash is fixed before it is submitted."""
    return hashlib.sha256(f"faucet:{usdc_issuer()}:{account_id}:{memo}".encode()).hexdigest()


def _minted_before(tx_hash: str, amount: int) -> SandboxTransaction | None:
    record = SandboxTransaction.objects.filter(hash=tx_hash).first()
    if record is not None and record.payments.get().amount != amount:
        raise TransactionRejected("op_malformed", "this memo already minted another amount to the account")
    return record


@transaction.atomic
def chain_mint_usdc(*, account_id: str, amount: int, memo: str = "") -> SandboxTransaction:
    """Faucet: the issuer pays sandbox USDC to an account that trusts it. With a `memo`, a
    mint happens once: asking again with the same account and memo answers the first
    transaction and mints nothing (the network applies one transaction once)."""
    if amount <= 0:
        raise TransactionRejected("op_malformed", "amount must be positive")
    if len(memo.encode()) > FAUCET_MEMO_MAX_BYTES:
        raise TransactionRejected("op_malformed", f"memo is longer than {FAUCET_MEMO_MAX_BYTES} bytes")
    tx_hash = faucet_hash(account_id=account_id, memo=memo) if memo else ""
    if tx_hash and (minted := _minted_before(tx_hash, amount)) is not None:
        return minted
    chain_genesis()
    ledger = ledger_close()  # locks the chain: a concurrent mint with the same memo is seen below
    if tx_hash and (minted := _minted_before(tx_hash, amount)) is not None:
        return minted
    if not SandboxAccount.objects.filter(account_id=account_id).exists():
        raise TransactionRejected("op_no_destination", "the account does not exist")
    issuer = usdc_issuer()
    record = _synthetic_record(source=issuer, ledger=ledger, tx_hash=tx_hash, memo=memo)
    try:
        _move_credit(0, issuer, account_id, "USDC", issuer, amount)
    except OperationFailed as failure:
        raise TransactionRejected(
            failure.code, "the account cannot receive USDC (no trustline or limit reached)"
        ) from None
    SandboxPayment.objects.create(
        transaction=record,
        type="payment",
        source_account=issuer,
        from_account=issuer,
        to_account=account_id,
        asset_code="USDC",
        asset_issuer=issuer,
        amount=amount,
    )
    return record
