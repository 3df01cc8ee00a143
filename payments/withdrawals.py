"""Crypto withdrawals: USDC from the user's own account to an external Stellar address.

hold → sign → store the hash → submit → post the hold, or void it on a final failure.
When Horizon's answer is lost (timeout, 5xx), the withdrawal waits in PENDING with its
hold, and `withdrawal_submit` settles it later: it looks the stored hash up first and
only ever resubmits the same signed envelope, so the payment cannot be sent twice.
"""

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from stellar_sdk import StrKey, TransactionBuilder

from offerhub.errors import ServiceError
from offerhub.leases import Lease, LeaseLost
from offerhub.locks import LockTimeout, lease_lock
from offerhub.money import chain_amount, money_from_stroops, money_to_stroops
from offerhub.services import audit_record, event_publish
from offerhub.timefmt import iso_timestamp
from payments.deposits import deposit_key
from payments.ledger import (
    InsufficientFunds,
    hold_post,
    hold_reserve,
    hold_void,
    ledger_account,
    ledger_lock,
    ledger_transfer,
    user_accounts,
)
from payments.models import Hold, JournalEntry, LedgerAccount, SecretHolder, Wallet, Withdrawal
from payments.stellar import (
    FEE_BUMP_INNER_FAILED,
    StellarError,
    TransactionFailed,
    _call,
    account_load,
    faucet_mint,
    horizon,
    ledger_closed_at,
    sandbox_chain,
    transaction_lookup,
    transaction_submit,
    usdc,
    usdc_balance,
)
from payments.wallets import MAX_FEE_PER_OPERATION, PlatformNotReady, platform_account

logger = logging.getLogger(__name__)


FAILURE_REASONS = {
    "op_no_trust": "The destination account no longer accepts USDC.",
    "op_no_destination": "The destination account no longer exists.",
    "op_underfunded": "The wallet does not hold enough USDC on chain; support has been alerted.",
    "op_line_full": "The destination account cannot receive this much USDC.",
    "tx_bad_auth": "The wallet could not sign the payment; support has been alerted.",
}


def payment_for_request(*, principal_id: str, idempotency_key: str) -> Withdrawal | None:
    """The payment an earlier try of this same API request already created, if any."""
    if not idempotency_key:
        return None
    return Withdrawal.objects.filter(principal_id=principal_id, idempotency_key=idempotency_key).first()


def withdrawal_limits() -> tuple[Decimal, Decimal]:
    limits = settings.OFFERHUB_LIMITS["withdrawal"]
    return Decimal(limits["min"]), Decimal(limits["max"])


def _destination_check(*, user, destination: str) -> None:
    if not StrKey.is_valid_ed25519_public_key(destination):
        raise ServiceError(
            "WITHDRAWAL_DESTINATION_INVALID",
            "The destination is not a valid Stellar address (56 characters starting with G).",
            field="destinationRef",
        )
    own = Wallet.objects.filter(user=user).values_list("public_key", flat=True).first()
    if destination == own:
        raise ServiceError(
            "WITHDRAWAL_DESTINATION_INVALID", "The destination is this account's own wallet.", field="destinationRef"
        )
    account = account_load(destination)
    if account is None:
        raise ServiceError(
            "WITHDRAWAL_DESTINATION_INVALID",
            "No Stellar account exists at this address yet. Its owner must first open it (a Stellar wallet "
            "app does this with a small XLM deposit) and add USDC to it; then send to it again. "
            "Nothing was withdrawn.",
            field="destinationRef",
            details={"reason": "account_missing", "usdcIssuer": settings.STELLAR_USDC_ISSUER},
        )
    if usdc_balance(account) is None:
        raise ServiceError(
            "WITHDRAWAL_DESTINATION_INVALID",
            "This account cannot receive USDC yet: its owner must add USDC to it, a USDC trustline (in a Stellar "
            f"wallet app: add the asset USDC issued by {settings.STELLAR_USDC_ISSUER}); then send to it again. "
            "Nothing was withdrawn.",
            field="destinationRef",
            details={"reason": "no_usdc_trustline", "usdcIssuer": settings.STELLAR_USDC_ISSUER},
        )


def withdrawal_funds_lock(*, user, stroops: int, requested: Decimal) -> tuple[LedgerAccount, LedgerAccount]:
    """Lock the member's balances (inside the caller's transaction) and refuse with
    INSUFFICIENT_FUNDS unless `stroops` are available: the check every withdrawal makes before its hold.
    Returns the (available, held) accounts, locked and fresh, for `withdrawal_hold_reserve`."""
    available, held = user_accounts(user)
    locked = ledger_lock([available, held])
    available, held = locked[available.pk], locked[held.pk]
    if available.balance < stroops:
        have = money_from_stroops(available.balance)
        raise ServiceError(
            "INSUFFICIENT_FUNDS",
            f"Not enough funds: ${have} available.",
            field="amount",
            details={"requested": str(requested), "available": have, "currency": "USD"},
        )
    return available, held


def withdrawal_hold_reserve(*, withdrawal: Withdrawal, accounts: tuple[LedgerAccount, LedgerAccount]) -> None:
    """Hold a new user withdrawal's amount under its `wd_` id (available → held) and publish
    `balance.reserved` in the same transaction, as `balance_reserve` does for an order.
    `accounts`: what `withdrawal_funds_lock` returned (locked by this transaction)."""
    from payments.balances import balance_hold_event, balance_snapshot_of  # payments.balances imports this module

    before = balance_snapshot_of(*accounts)
    try:
        hold_reserve(
            user=withdrawal.user,
            reference=withdrawal.hold_reference,
            amount=withdrawal.amount,
            owner=Hold.Owner.PAYMENT,
            accounts=accounts,
        )
    except InsufficientFunds as exc:  # unreachable under withdrawal_funds_lock; kept as a guard
        raise ServiceError("INSUFFICIENT_FUNDS", "Not enough funds.", field="amount") from exc
    after = balance_snapshot_of(*accounts)  # the locked rows, as the posting left them
    balance_hold_event(withdrawal.user, "balance.reserved", withdrawal.amount, withdrawal.hold_reference, before, after)


def withdrawal_check_crypto(*, user, amount: Decimal, destination: str, memo: str = "") -> None:
    """What withdrawal_create_crypto would refuse, found before the member confirms (the web page
    asks for a confirmation first): limits, memo, wallet, destination, and the available balance
    now. Raises the same ServiceErrors; moves and locks nothing (the withdrawal checks again)."""
    _request_check(user=user, amount=amount, destination=destination, memo=memo)
    available, _ = user_accounts(user)
    if available.balance < money_to_stroops(amount):
        raise ServiceError(
            "INSUFFICIENT_FUNDS",
            f"Not enough funds: ${money_from_stroops(available.balance)} available.",
            field="amount",
        )


def _request_check(*, user, amount: Decimal, destination: str, memo: str) -> None:
    minimum, maximum = withdrawal_limits()
    if not minimum <= amount <= maximum:
        raise ServiceError(
            "INVALID_AMOUNT",
            f"Withdrawals must be between ${minimum:,.2f} and ${maximum:,.2f}.",
            field="amount",
            details={"min": str(minimum), "max": str(maximum)},
        )
    if len(memo.encode()) > 28:
        raise ServiceError("VALIDATION_ERROR", "The memo is at most 28 bytes.", field="memo")
    if not Wallet.objects.filter(user=user, status=Wallet.Status.ACTIVE).exists():
        raise ServiceError("WALLET_NOT_FOUND", "This account has no active wallet yet.")
    _destination_check(user=user, destination=destination)


def withdrawal_create_crypto(
    *,
    user,
    amount: Decimal,
    destination: str,
    memo: str = "",
    description: str = "",
    principal_id: str = "",
    idempotency_key: str = "",
    actor_type: str,
    actor_id: str,
) -> Withdrawal:
    """Validate, hold and sign, then submit. Nothing moves on any validation error."""
    existing = payment_for_request(principal_id=principal_id, idempotency_key=idempotency_key)
    if existing is not None:  # a retry of a request whose response was lost
        return existing
    _request_check(user=user, amount=amount, destination=destination, memo=memo)
    stroops = money_to_stroops(amount)

    with transaction.atomic():
        accounts = withdrawal_funds_lock(user=user, stroops=stroops, requested=amount)
        withdrawal = Withdrawal.objects.create(
            user=user,
            amount=stroops,
            destination_type=Withdrawal.DestinationType.CRYPTO,
            destination_ref=destination,
            memo=memo,
            description=description,
            principal_id=principal_id,
            idempotency_key=idempotency_key,
        )
        withdrawal_hold_reserve(withdrawal=withdrawal, accounts=accounts)
        _record(withdrawal, "withdrawal.created", actor_type, actor_id)
        _publish(withdrawal, "withdrawal.created", currency="USD", destinationType="crypto", destinationRef=destination)
    return withdrawal_submit(withdrawal=withdrawal)


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


def _record(withdrawal: Withdrawal, action: str, actor_type: str = "SYSTEM", actor_id: str = "withdrawals"):
    audit_record(
        action=action,
        resource_type="Withdrawal",
        resource_id=withdrawal.public_id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_after={
            "status": withdrawal.status,
            "amount": money_from_stroops(withdrawal.amount),
            "destinationRef": withdrawal.destination_ref,
            "transactionHash": withdrawal.transaction_hash or None,
        },
        user_id=withdrawal.user.public_id,
    )


def submission_lock_name(account_id: str) -> str:
    return f"stellar-account:{account_id}"


@contextlib.contextmanager
def account_submission_lock(account_id: str, timeout: float = 120.0) -> Iterator[Lease]:
    """One submission at a time per Stellar account (its sequence number is one counter):
    withdrawals, escrow calls and activations signed by the same account take turns. Hold it
    only to read the sequence number, sign, store the hash and send: never across a build
    that asks a provider over HTTP. Yields the lease: `lease.fence()` inside the transaction
    that stores a signed envelope refuses it if a stall let another holder take the lease."""
    try:
        with lease_lock(submission_lock_name(account_id), timeout=timeout) as lease:
            yield lease
    except LockTimeout:
        raise StellarError("PROVIDER_UNAVAILABLE", "the account is busy with another transaction") from None


def wallet_submission_lock(wallet: Wallet, timeout: float = 120.0):
    return account_submission_lock(wallet.public_key, timeout)


def _signer(withdrawal: Withdrawal) -> SecretHolder:
    """The account the payment leaves from: the platform treasury for a bridge, else the user's wallet."""
    if withdrawal.purpose == Withdrawal.Purpose.BRIDGE:
        return platform_account()
    return Wallet.objects.get(user=withdrawal.user)


def _payee(withdrawal: Withdrawal) -> str:
    """Where the USDC goes: the platform treasury for a withdrawal Airtm has paid in dollars."""
    if withdrawal.through_airtm:
        return platform_account().public_key
    return withdrawal.destination_ref


def _build_envelope(withdrawal: Withdrawal, source: SecretHolder):
    """The payment from the source account; a user's payment is wrapped in a fee bump paid by the platform."""
    platform = platform_account()
    paid_by_platform = source.public_key == platform.public_key
    account = _call(lambda: horizon().load_account(source.public_key))
    base_fee = MAX_FEE_PER_OPERATION if paid_by_platform else 100
    builder = TransactionBuilder(account, settings.STELLAR_NETWORK_PASSPHRASE, base_fee=base_fee).append_payment_op(
        _payee(withdrawal), usdc(), chain_amount(withdrawal.amount)
    )
    if withdrawal.memo:
        builder = builder.add_text_memo(withdrawal.memo)
    inner = builder.set_timeout(settings.STELLAR_TX_LIFETIME_SECONDS).build()
    inner.sign(source.keypair())
    if paid_by_platform:
        return inner
    bumped = TransactionBuilder.build_fee_bump_transaction(
        platform.public_key, MAX_FEE_PER_OPERATION, inner, settings.STELLAR_NETWORK_PASSPHRASE
    )
    bumped.sign(platform.keypair())
    return bumped


def _may_fail(withdrawal: Withdrawal) -> bool:
    """Whether a refusal on chain ends the payment. A bridge (Airtm has the user's dollars) and a
    sweep (Airtm has paid the user) must land in the end: they wait and are signed again."""
    return withdrawal.purpose != Withdrawal.Purpose.BRIDGE and not withdrawal.through_airtm


RETRY_BACKOFF_SECONDS = 30
RETRY_BACKOFF_MAX_SECONDS = 3600


def _retry_due(withdrawal: Withdrawal) -> bool:
    """A payment that failed on chain is signed again after a back-off growing with its attempts."""
    delay = min(RETRY_BACKOFF_SECONDS * 2 ** max(withdrawal.submit_attempts - 1, 0), RETRY_BACKOFF_MAX_SECONDS)
    return timezone.now() >= withdrawal.updated_at + timedelta(seconds=delay)


def _can_never_land(withdrawal: Withdrawal) -> bool:
    """True once Horizon's ingested history is past the envelope's time bounds: if none of
    our hashes is in it by then, none of them can ever be applied."""
    expires = withdrawal.envelope_expires_at
    margin = timedelta(seconds=settings.STELLAR_TX_EXPIRY_MARGIN_SECONDS)  # clock skew between us and the network
    return expires is not None and ledger_closed_at() > expires + margin


def _landed(withdrawal: Withdrawal) -> dict | None:
    """What the network did with our envelopes: a successful one wins; a failed one counts
    only if it is the latest (an older failure says nothing about a newer envelope)."""
    hashes = [tx_hash for tx_hash in (withdrawal.attempted_hashes or [withdrawal.transaction_hash]) if tx_hash]
    latest_failed = None
    for tx_hash in reversed(hashes):
        found = transaction_lookup(tx_hash)
        if found is None:
            continue
        if found.get("successful"):
            return found
        if tx_hash == hashes[-1]:
            latest_failed = found
    return latest_failed


def withdrawal_submit(*, withdrawal: Withdrawal, rounds: int = 3) -> Withdrawal:
    """Drive a withdrawal to its end, as far as Horizon allows now; never pays twice.

    Every envelope ever signed for it is looked up first. The stored envelope is only ever
    resubmitted as it is (the network applies one hash once); a replacement is signed
    only when Horizon's history shows the stored one can no longer land."""
    try:
        source = _signer(withdrawal)
        with account_submission_lock(source.public_key) as lease:
            return _drive(withdrawal.pk, source, rounds, lease)
    except (StellarError, PlatformNotReady) as error:
        return _pending(withdrawal, f"Waiting for Stellar ({error}); the payment will be checked again.")
    except LeaseLost:  # stalled past the account's lease: whatever it stored is looked up next time
        return _pending(withdrawal, "Waiting for Stellar; the payment will be checked again.")


def _sequence_spent(envelope, source: SecretHolder) -> bool:
    """Whether the source account's sequence is already at or past the envelope's: then it can
    never be applied (another transaction of that account, e.g. a wallet activation, took it)."""
    tx = envelope.transaction
    inner = getattr(tx, "inner_transaction_envelope", None)
    sequence = (inner.transaction if inner is not None else tx).sequence
    account = account_load(source.public_key)
    return account is not None and int(account["sequence"]) >= sequence


def _drive(pk: int, source: SecretHolder, rounds: int, lease: Lease) -> Withdrawal:
    withdrawal = Withdrawal.objects.get(pk=pk)
    resign = False
    for _ in range(rounds):
        stored = False
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal
        found = _landed(withdrawal)
        if found is not None and found.get("successful"):
            return _settle_success(withdrawal, landed_hash=found.get("hash", ""))
        if found is not None:  # the latest envelope failed on chain
            if _may_fail(withdrawal):
                return _settle_failure(withdrawal, "The payment failed on the Stellar network.", "tx_failed")
            if not _retry_due(withdrawal):
                return withdrawal
            withdrawal, stored = _store_envelope(withdrawal, _build_envelope(withdrawal, source), lease), True
        elif resign or not withdrawal.envelope_xdr or _can_never_land(withdrawal):
            withdrawal, stored = _store_envelope(withdrawal, _build_envelope(withdrawal, source), lease), True
        resign = False
        envelope = TransactionBuilder.from_xdr(withdrawal.envelope_xdr, settings.STELLAR_NETWORK_PASSPHRASE)
        if not stored:  # storing renewed it (fenced) a moment ago
            lease.renew()  # still ours right before the envelope leaves (LeaseLost if not)
        try:
            transaction_submit(envelope)
        except TransactionFailed as failure:
            refused = failure.refusal_code  # a fee bump's inner code (the envelopes are fee-bumped)
            if refused in ("tx_bad_seq", "tx_too_late", "tx_duplicate", FEE_BUMP_INNER_FAILED):
                # Not a verdict on the payment: an earlier attempt may have landed, or this
                # envelope is stale (or a fee bump refused without its inner code: maybe stale).
                # Look everything up again before anything else; an envelope whose sequence the
                # account has spent is signed anew once none of ours landed.
                resign = refused == "tx_bad_seq" and _sequence_spent(envelope, source)
                withdrawal = Withdrawal.objects.get(pk=pk)
                continue
            code = (failure.operation_codes or [refused])[-1]
            reason = FAILURE_REASONS.get(code, f"The Stellar network refused the payment ({code}).")
            if code == "op_underfunded" and withdrawal.purpose == Withdrawal.Purpose.BRIDGE:
                reason = "The platform treasury holds too little USDC for this top-up; it is paid once refilled."
            if _may_fail(withdrawal):
                return _settle_failure(withdrawal, reason, code)
            return _retry_later(withdrawal, reason, code)
        return _settle_success(withdrawal)
    return _pending(withdrawal, "Waiting for the Stellar network to confirm the payment.")


def _store_envelope(withdrawal: Withdrawal, envelope, lease: Lease) -> Withdrawal:
    """Commit the hash before submitting: after a crash the lookup finds what was sent. Fenced:
    refused (LeaseLost) if a stall let another holder take the account's lease meanwhile."""
    with transaction.atomic():
        lease.fence()
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        withdrawal.transaction_hash = envelope.hash_hex()
        withdrawal.attempted_hashes = [*withdrawal.attempted_hashes, withdrawal.transaction_hash]
        withdrawal.envelope_xdr = envelope.to_xdr()
        withdrawal.envelope_expires_at = timezone.now() + timedelta(seconds=settings.STELLAR_TX_LIFETIME_SECONDS)
        withdrawal.submit_attempts += 1
        fields = [
            "transaction_hash",
            "attempted_hashes",
            "envelope_xdr",
            "envelope_expires_at",
            "submit_attempts",
            "updated_at",
        ]
        if withdrawal.status == Withdrawal.Status.CREATED:
            withdrawal.commit()
            fields += ["status", "committed"]
        withdrawal.save(update_fields=fields)
    return withdrawal


def _to_pending(withdrawal: Withdrawal) -> None:
    if withdrawal.status == Withdrawal.Status.CREATED:
        withdrawal.commit()
    if withdrawal.status != Withdrawal.Status.PENDING:
        withdrawal.mark_pending()


def _pending(withdrawal: Withdrawal, reason: str) -> Withdrawal:
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        if withdrawal.status in (Withdrawal.Status.CREATED, Withdrawal.Status.COMMITTED):
            _to_pending(withdrawal)
            withdrawal.failure_reason = reason[:255]
            withdrawal.save()
            _record(withdrawal, "withdrawal.pending")
        elif withdrawal.status == Withdrawal.Status.PENDING and withdrawal.failure_reason != reason[:255]:
            # Already waiting (a sweep, a bridge, a second lost answer): say what it waits for now.
            withdrawal.failure_reason = reason[:255]
            withdrawal.save(update_fields=["failure_reason", "updated_at"])
    logger.warning("withdrawal %s pending: %s", withdrawal.public_id, reason)
    return withdrawal


def _retry_later(withdrawal: Withdrawal, reason: str, code: str) -> Withdrawal:
    """A payment that must land was refused: it waits with the reason shown, and is signed again later."""
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal
        _to_pending(withdrawal)
        withdrawal.failure_reason, withdrawal.error_code = reason[:255], code[:50]
        withdrawal.save()
        _record(withdrawal, f"{withdrawal.purpose}.retrying")
    logger.error("payment %s refused on chain (%s); it will be signed again", withdrawal.public_id, code)
    return withdrawal


def _landing(withdrawal: Withdrawal) -> tuple[LedgerAccount, str | None, Wallet | None]:
    """Where held money goes once the payment landed: (account, entry key, recipient wallet).

    Paid to one of our wallets, it is that user's deposit, posted under the deposit key
    so the watcher skips it; if the watcher got there first, the buyer side alone is
    posted, against the external account the watcher credited from."""
    external = ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR)
    if withdrawal.through_airtm:  # the user was paid in dollars by Airtm; the USDC went to the treasury
        return ledger_account(kind=LedgerAccount.Kind.EXTERNAL_AIRTM), None, None
    if withdrawal.purpose == Withdrawal.Purpose.BURN:
        return ledger_account(kind=LedgerAccount.Kind.ADJUSTMENTS), None, None
    recipient = Wallet.objects.filter(public_key=withdrawal.destination_ref).select_related("user").first()
    if recipient is None:
        return external, None, None
    key = deposit_key(withdrawal.transaction_hash, recipient.public_key)
    if JournalEntry.objects.filter(idempotency_key=key).exists():
        return external, None, None
    available, _ = user_accounts(recipient.user)
    return available, key, recipient


def _settle_success(withdrawal: Withdrawal, *, landed_hash: str = "") -> Withdrawal:
    if withdrawal.purpose == Withdrawal.Purpose.BRIDGE:
        return _settle_bridge(withdrawal, landed_hash=landed_hash)
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal
        if landed_hash:
            withdrawal.transaction_hash = landed_hash  # an earlier envelope may be the one that landed
        user = withdrawal.user
        # Lock both sides before looking at the deposit key: the watcher may be crediting
        # the same payment to the recipient right now, under the recipient's lock.
        involved = list(user_accounts(user))
        recipient_wallet = Wallet.objects.filter(public_key=withdrawal.destination_ref).select_related("user").first()
        if recipient_wallet is not None:
            involved += user_accounts(recipient_wallet.user)
        ledger_lock(involved)
        destination, key, recipient = _landing(withdrawal)
        previous = LedgerAccount.objects.get(pk=destination.pk).balance if recipient else None
        hold_post(
            user=user,
            reference=withdrawal.hold_reference,
            destination=destination,
            kind=withdrawal.purpose,
            amount=withdrawal.amount,
            idempotency_key=key,
        )
        withdrawal.complete()
        withdrawal.failure_reason = ""
        withdrawal.save()
        _record(withdrawal, f"{withdrawal.purpose}.completed")
        amount = money_from_stroops(withdrawal.amount)
        if recipient is not None:
            destination.refresh_from_db()
            event_publish(
                type="balance.credited",
                aggregate_type="Balance",
                aggregate_id=recipient.user.public_id,
                payload={
                    "userId": recipient.user.public_id,
                    "amount": amount,
                    "currency": "USD",
                    "source": "release" if withdrawal.purpose == Withdrawal.Purpose.RELEASE else "stellar_deposit",
                    "sourceId": withdrawal.hold_reference,
                    "transactionHash": withdrawal.transaction_hash,
                    "previousAvailableBalance": money_from_stroops(previous),
                    "newAvailableBalance": money_from_stroops(destination.balance),
                    "newBalance": money_from_stroops(destination.balance),
                },
                user_id=recipient.user.public_id,
                marketplace_id=recipient.user.marketplace_id,
            )
        if withdrawal.purpose == Withdrawal.Purpose.WITHDRAWAL:
            _publish(
                withdrawal,
                "withdrawal.completed",
                currency="USD",
                completedAt=iso_timestamp(withdrawal.completed_at),
                transactionHash=withdrawal.transaction_hash,
                **({"airtmPayoutId": withdrawal.airtm_payout_id} if withdrawal.airtm_payout_id else {}),
            )
    return withdrawal


def _settle_failure(withdrawal: Withdrawal, reason: str, code: str) -> Withdrawal:
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal
        user = withdrawal.user
        # Only user withdrawals are in the catalog; the internal release/burn payments publish nothing.
        published = withdrawal.purpose == Withdrawal.Purpose.WITHDRAWAL
        if published:
            from payments.balances import balance_hold_event, balance_snapshot  # payments.balances imports this module

            before = balance_snapshot(user=user, lock=True)  # the accounts hold_void locks, locked first to read
        # The payment's own hold goes back to available (for a release: the part it took from the order's hold).
        hold_void(user=user, reference=withdrawal.hold_reference)
        if published:
            after = balance_snapshot(user=user)
        withdrawal.fail(reason=reason, code=code)
        withdrawal.save()
        _record(withdrawal, f"{withdrawal.purpose}.failed")
        if not published:
            return withdrawal
        _publish(withdrawal, "withdrawal.failed", reason=reason, errorCode=code)
        # Its hold back to available, as an Airtm withdrawal's failure reports it (airtm_withdrawals._close_locked).
        balance_hold_event(
            user, "balance.released", withdrawal.amount, withdrawal.hold_reference, before, after, reason="withdrawal"
        )
    return withdrawal


def bridge_pay(*, user, amount: int, reference: str) -> Withdrawal:
    """Pay a confirmed top-up's dollars into the user's own wallet as USDC from the platform
    treasury, once per reference (the top-up id); returns the bridge payment. The user's
    available balance is credited once, when the payment lands, against the external Airtm
    account. Talks to Horizon: never call it inside a transaction."""
    wallet = Wallet.objects.filter(user=user, status=Wallet.Status.ACTIVE).first()
    if wallet is None:
        raise ServiceError("WALLET_NOT_FOUND", "This account has no active wallet yet.")
    bridge = Withdrawal.objects.filter(purpose=Withdrawal.Purpose.BRIDGE, hold_reference=reference).first()
    if bridge is None:
        try:
            with transaction.atomic():
                bridge = Withdrawal.objects.create(
                    user=user,
                    amount=amount,
                    purpose=Withdrawal.Purpose.BRIDGE,
                    hold_reference=reference,
                    destination_type=Withdrawal.DestinationType.CRYPTO,
                    destination_ref=wallet.public_key,
                    description=f"USDC for top-up {reference}",
                )
                _record(bridge, "bridge.created")
        except IntegrityError:  # another worker created it first: drive that one
            bridge = Withdrawal.objects.get(purpose=Withdrawal.Purpose.BRIDGE, hold_reference=reference)
    if bridge.user_id != user.pk or bridge.amount != amount:
        raise ServiceError("CONFLICT", f"Reference {reference} already bridged another payment.")
    if sandbox_chain() and bridge.status not in Withdrawal.TERMINAL:
        # The sandbox stands in for the operator buying USDC with Airtm's dollars: the treasury
        # receives this top-up's USDC once (the faucet mints once per memo).
        faucet_mint(address=platform_account().public_key, amount=amount, memo=f"bridge:{reference}"[:28])
    return withdrawal_submit(withdrawal=bridge)


def _settle_bridge(withdrawal: Withdrawal, *, landed_hash: str = "") -> Withdrawal:
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal
        if landed_hash:
            withdrawal.transaction_hash = landed_hash
        user = withdrawal.user
        available, held = user_accounts(user)
        # Under the user's lock: the deposit watcher credits the same payment under the same key.
        previous = ledger_lock([available, held])[available.pk].balance
        airtm = ledger_account(kind=LedgerAccount.Kind.EXTERNAL_AIRTM)
        key = deposit_key(withdrawal.transaction_hash, withdrawal.destination_ref)
        metadata = {"reference": withdrawal.hold_reference, "transactionHash": withdrawal.transaction_hash}
        credited_now = not JournalEntry.objects.filter(idempotency_key=key).exists()
        if credited_now:
            ledger_transfer(
                idempotency_key=key,
                kind="topup",
                source=airtm,
                destination=available,
                amount=withdrawal.amount,
                metadata=metadata,
            )
        else:  # the watcher credited it as a Stellar deposit: the money came in through Airtm
            ledger_transfer(
                idempotency_key=f"bridge-source:{withdrawal.public_id}",
                kind="topup",
                source=airtm,
                destination=ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR),
                amount=withdrawal.amount,
                metadata=metadata,
            )
        withdrawal.complete()
        withdrawal.failure_reason = ""
        withdrawal.save()
        _record(withdrawal, "bridge.completed")
        if credited_now:
            new = previous + withdrawal.amount
            event_publish(
                type="balance.credited",
                aggregate_type="Balance",
                aggregate_id=user.public_id,
                payload={
                    "userId": user.public_id,
                    "amount": money_from_stroops(withdrawal.amount),
                    "currency": "USD",
                    "source": "topup",
                    "sourceId": withdrawal.hold_reference,
                    "transactionHash": withdrawal.transaction_hash,
                    "previousAvailableBalance": money_from_stroops(previous),
                    "newAvailableBalance": money_from_stroops(new),
                    "newBalance": money_from_stroops(new),
                },
                user_id=user.public_id,
                marketplace_id=user.marketplace_id,
            )
    return withdrawal


def withdrawal_sweep(*, withdrawal: Withdrawal) -> Withdrawal:
    """Airtm has paid the user dollars: move the held USDC from their wallet to the platform
    treasury (once, looked up before any resubmission) and post the hold to the external
    Airtm account when it lands; the withdrawal is then COMPLETED. While the chain has not
    settled it stays PENDING and may be swept again. Never call it inside a transaction."""
    if not withdrawal.through_airtm:
        raise ValueError(f"{withdrawal.public_id} is not an Airtm withdrawal")
    with transaction.atomic():
        withdrawal = Withdrawal.objects.select_for_update().get(pk=withdrawal.pk)
        if withdrawal.status in Withdrawal.TERMINAL:
            return withdrawal
        if withdrawal.status != Withdrawal.Status.PENDING:
            _to_pending(withdrawal)
            withdrawal.save()
            _record(withdrawal, "withdrawal.sweeping")
    return withdrawal_submit(withdrawal=withdrawal)
