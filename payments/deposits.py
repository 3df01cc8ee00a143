"""Deposits: USDC arriving on chain at a user's wallet, credited once per payment.

One watcher follows Horizon's payments feed from a stored cursor. Its requests per run
grow with the number of new payments on the network, never with the number of wallets:
recipients are matched against our wallets with one database query per page.
"""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import DecimalField, Q, Value
from django.db.models.functions import Cast, NullIf
from django.utils import timezone

from offerhub.leases import Lease, job_lease, job_lease_renew
from offerhub.money import money_from_stroops, money_to_stroops
from offerhub.services import audit_record, event_publish
from payments.ledger import ledger_account, ledger_lock, ledger_transfer, user_accounts
from payments.models import ChainCursor, JournalEntry, LedgerAccount, Wallet, Withdrawal
from payments.stellar import _call, horizon
from payments.wallets import DEPOSIT_CURSOR

PAGE_SIZE = 200
# Renewed before every page: a page (one Horizon read and its credits) takes far less.
DEPOSITS_LEASE = timedelta(minutes=2)


def deposit_key(tx_hash: str, recipient: str) -> str:
    """What one transaction paid one wallet: the key under which it is credited, exactly once,
    whether by the watcher or by the service that made the payment (release, adjustments)."""
    return f"stellar-deposit:{tx_hash}:{recipient}"


def deposit_credit(*, wallet: Wallet, amount: int, tx_hash: str) -> bool:
    """Credit one on-chain payment to the wallet's owner; False if it was credited before."""
    key = deposit_key(tx_hash, wallet.public_key)
    user = wallet.user
    available, held = user_accounts(user)
    with transaction.atomic():
        # Under the recipient's lock: a release settling the same payment checks this key too.
        previous = ledger_lock([available, held])[available.pk].balance
        if JournalEntry.objects.filter(idempotency_key=key).exists():
            return False
        ledger_transfer(
            idempotency_key=key,
            kind="deposit",
            source=ledger_account(kind=LedgerAccount.Kind.EXTERNAL_STELLAR),
            destination=available,
            amount=amount,
            metadata={"transactionHash": tx_hash},
        )
        new = previous + amount
        audit_record(
            action="balance.deposit_credited",
            resource_type="Balance",
            resource_id=user.public_id,
            actor_type="SYSTEM",
            actor_id="deposit-watcher",
            payload_before={"available": money_from_stroops(previous)},
            payload_after={"available": money_from_stroops(new), "transactionHash": tx_hash},
            user_id=user.public_id,
            marketplace_id=user.marketplace_id,
        )
        event_publish(
            type="balance.credited",
            aggregate_type="Balance",
            aggregate_id=user.public_id,
            payload={
                "userId": user.public_id,
                "amount": money_from_stroops(amount),
                "currency": "USD",
                "source": "stellar_deposit",
                "transactionHash": tx_hash,
                "previousAvailableBalance": money_from_stroops(previous),
                "newAvailableBalance": money_from_stroops(new),
                "newBalance": money_from_stroops(new),
            },
            user_id=user.public_id,
            marketplace_id=user.marketplace_id,
        )
    return True


def _is_usdc_payment(record: dict) -> bool:
    return (
        record.get("type") == "payment"
        and record.get("asset_code") == "USDC"
        and record.get("asset_issuer") == settings.STELLAR_USDC_ISSUER
        and record.get("transaction_successful", True)
    )


def deposits_sync(*, max_pages: int = 50, page_size: int = PAGE_SIZE) -> int:
    """Read new payments from the feed and credit those to our wallets. Returns how many.

    Single-flight across nodes (a lease renewed per page): a run that finds another one
    reading returns 0 at once, so no page of the feed is read twice."""
    credited = 0
    with job_lease(name="deposits_sync", ttl=DEPOSITS_LEASE) as lease:
        if lease is None:
            return 0
        credited = _deposits_read(lease, max_pages=max_pages, page_size=page_size)
    return credited


def chain_cursor_advance(*, name: str, paging_token: str) -> bool:
    """Store the feed's cursor only if it moves forward (paging tokens are decimal integers,
    compared as numbers); False if it was already there or further: a slow run that lost its
    lease can never move it back."""
    position = Cast(NullIf("paging_token", Value("")), output_field=DecimalField(max_digits=40, decimal_places=0))
    ahead = ChainCursor.objects.annotate(position=position).filter(
        Q(position__isnull=True) | Q(position__lt=Decimal(paging_token)), name=name
    )
    return bool(ahead.update(paging_token=paging_token, updated_at=timezone.now()))


def _deposits_read(lease: Lease, *, max_pages: int, page_size: int) -> int:
    cursor_row, _ = ChainCursor.objects.get_or_create(name=DEPOSIT_CURSOR)
    cursor = cursor_row.paging_token
    server = horizon()
    credited = 0
    for page in range(max_pages):
        if page and not job_lease_renew(name=lease.name, holder=lease.holder, ttl=lease.ttl):
            break  # a stall let the lease expire and another run took over: it reads on from the cursor
        request = server.payments().order(desc=False).limit(page_size)
        if cursor:
            request = request.cursor(cursor)
        records = _call(request.call)["_embedded"]["records"]
        if not records:
            break
        full_page = len(records) == page_size
        if full_page:
            # A transaction (at most 100 operations) may go on in the next page: leave its
            # records for the next read, so (transaction, recipient) is always summed whole.
            last_hash = records[-1]["transaction_hash"]
            complete = [r for r in records if r["transaction_hash"] != last_hash]
            records = complete or records
        payments = [record for record in records if _is_usdc_payment(record)]
        wallets = {
            wallet.public_key: wallet
            for wallet in Wallet.objects.filter(public_key__in={p["to"] for p in payments}).select_related("user")
        }
        # A top-up's bridge (the treasury paying a member) is credited by the bridge itself, as a
        # top-up; a watcher crediting it first would announce it as a plain Stellar deposit.
        bridged = set(
            Withdrawal.objects.filter(
                purpose=Withdrawal.Purpose.BRIDGE, transaction_hash__in={p["transaction_hash"] for p in payments}
            ).values_list("transaction_hash", flat=True)
        )
        received: dict[tuple[str, str], int] = {}
        for payment in payments:
            if payment["to"] in wallets and payment["transaction_hash"] not in bridged:
                key = (payment["transaction_hash"], payment["to"])
                received[key] = received.get(key, 0) + money_to_stroops(Decimal(payment["amount"]))
        # One short transaction per deposit: a page-long one would hold the shared accounts' locks.
        for (tx_hash, recipient), amount in received.items():
            credited += deposit_credit(wallet=wallets[recipient], amount=amount, tx_hash=tx_hash)
        cursor = records[-1]["paging_token"]
        if not chain_cursor_advance(name=DEPOSIT_CURSOR, paging_token=cursor):
            break  # another run is further along the feed
        if not full_page:
            break
    return credited
