"""Payments background jobs: thin wrappers around the services."""

import logging
from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from payments import topups
from payments.airtm_withdrawals import airtm_withdrawals_open, withdrawal_refresh_airtm
from payments.deposits import deposits_sync
from payments.models import Topup, Wallet, Withdrawal
from payments.reconciliation import wallets_reconcile
from payments.stellar import StellarError
from payments.wallets import wallet_activate
from payments.withdrawals import withdrawal_submit

logger = logging.getLogger(__name__)


@shared_task(name="payments.tasks.wallets_activate")
def wallets_activate(wallet_pk: int) -> str:
    """One attempt; if the chain is unreachable, wallets_activate_pending tries again."""
    try:
        return wallet_activate(wallet=Wallet.objects.get(pk=wallet_pk)).status
    except StellarError as error:
        logger.warning("wallet %s not activated yet: %s", wallet_pk, error)
        return Wallet.Status.PENDING


@shared_task(name="payments.tasks.wallets_activate_pending")
def wallets_activate_pending() -> int:
    """Activations whose first attempt failed (provider down) are retried here."""
    cutoff = timezone.now() - timedelta(seconds=30)
    activated = 0
    for wallet in Wallet.objects.filter(status=Wallet.Status.PENDING, created_at__lt=cutoff)[:100]:
        try:
            activated += wallet_activate(wallet=wallet).status == Wallet.Status.ACTIVE
        except StellarError:
            break  # the chain is unreachable: try again at the next run
    return activated


@shared_task(name="payments.tasks.deposits_watch")
def deposits_watch() -> int:
    return deposits_sync()


@shared_task(name="payments.tasks.withdrawals_resolve_pending")
def withdrawals_resolve_pending() -> int:
    resolved = 0
    # CREATED ones older than a minute were interrupted (a crash) between their hold and their submission.
    stuck_created = Q(status=Withdrawal.Status.CREATED, created_at__lt=timezone.now() - timedelta(minutes=1))
    open_ones = Withdrawal.objects.filter(
        Q(status__in=[Withdrawal.Status.COMMITTED, Withdrawal.Status.PENDING]) | stuck_created,
        destination_type="crypto",
    ).order_by("id")[:100]
    for withdrawal in open_ones:
        try:
            resolved += withdrawal_submit(withdrawal=withdrawal).status in Withdrawal.TERMINAL
        except Exception:  # one broken withdrawal must not stop the others
            logger.exception("could not resolve withdrawal %s", withdrawal.public_id)
    return resolved


@shared_task(name="payments.tasks.wallets_reconcile")
def wallets_reconcile_task() -> int:
    return wallets_reconcile()


@shared_task(name="payments.tasks.airtm_withdrawal_settle")
def airtm_withdrawal_settle(withdrawal_pk: int) -> str:
    """After a payout webhook: read the payout at Airtm again and, if it is COMPLETED, sweep."""
    return withdrawal_refresh_airtm(withdrawal=Withdrawal.objects.get(pk=withdrawal_pk)).status


@shared_task(name="payments.tasks.airtm_withdrawals_resolve_pending")
def airtm_withdrawals_resolve_pending() -> int:
    """Every open Airtm withdrawal, read at Airtm again: lost answers found (or created) by code,
    asked-for commits made, states applied, sweeps of completed payouts driven. Each in its own try."""
    finished = 0
    for withdrawal in airtm_withdrawals_open()[:200]:
        try:
            finished += withdrawal_refresh_airtm(withdrawal=withdrawal).status in Withdrawal.TERMINAL
        except Exception:  # one broken withdrawal must not stop the others
            logger.exception("could not resolve Airtm withdrawal %s", withdrawal.public_id)
    return finished


@shared_task(name="payments.tasks.airtm_reconcile_task")
def airtm_reconcile_task() -> int:
    """Hourly: our top-ups and Airtm withdrawals against Airtm; how many have an OPEN discrepancy."""
    from payments.airtm_reconciliation import airtm_reconcile

    return len(airtm_reconcile())


@shared_task(name="payments.tasks.topup_bridge")
def topup_bridge_task(topup_pk: int) -> str:
    """Pay a confirmed top-up's USDC to the member's wallet; topups_resolve_pending retries it."""
    try:
        return topups.topup_bridge(topup=Topup.objects.get(pk=topup_pk)).status
    except StellarError as error:
        logger.warning("top-up %s: bridge not done yet: %s", topup_pk, error)
        return Topup.Status.PROCESSING


@shared_task(name="payments.tasks.topups_resolve_pending")
def topups_resolve_pending() -> int:
    """Every 60 s: unfinished top-ups read again at Airtm, expired ones canceled, bridges re-driven."""
    return topups.topups_resolve_pending()
