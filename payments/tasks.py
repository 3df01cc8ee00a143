"""Payments background jobs: thin wrappers around the services."""

import logging
from datetime import timedelta

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from offerhub.leases import job_lease
from payments import topups
from payments.airtm_withdrawals import airtm_withdrawals_open, withdrawal_refresh_airtm
from payments.deposits import deposits_sync
from payments.models import Topup, Wallet, Withdrawal
from payments.reconciliation import wallets_reconcile
from payments.stellar import StellarError
from payments.wallets import wallet_activate
from payments.withdrawals import withdrawal_submit

logger = logging.getLogger(__name__)

# Periodic jobs run single-flight across nodes (offerhub.leases). A lease renewed per item
# outlives the slowest item (an item may wait up to 120 s for its account's submission lock);
# a job whose loop does not renew gets a lease longer than any run of it should take.
ITEM_LEASE = timedelta(minutes=5)
LONG_LEASE = timedelta(minutes=30)


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
    """Activations whose first attempt failed (provider down) are retried here. Single-flight."""
    activated = 0
    with job_lease(name="wallets_activate_pending", ttl=ITEM_LEASE) as lease:
        if lease is None:
            return 0
        cutoff = timezone.now() - timedelta(seconds=30)
        for wallet in Wallet.objects.filter(status=Wallet.Status.PENDING, created_at__lt=cutoff)[:100]:
            lease.progress()
            try:
                activated += wallet_activate(wallet=wallet).status == Wallet.Status.ACTIVE
            except StellarError:
                break  # the chain is unreachable: try again at the next run
    return activated


@shared_task(name="payments.tasks.deposits_watch")
def deposits_watch() -> int:
    """Every 15 s; single-flight inside deposits_sync (a run finding another reading returns 0)."""
    return deposits_sync()


@shared_task(name="payments.tasks.withdrawals_resolve_pending")
def withdrawals_resolve_pending() -> int:
    """Single-flight: two runs would look up and resubmit the same withdrawals side by side."""
    resolved = 0
    with job_lease(name="withdrawals_resolve_pending", ttl=ITEM_LEASE) as lease:
        if lease is None:
            return 0
        # CREATED ones older than a minute were interrupted (a crash) between their hold and their submission.
        stuck_created = Q(status=Withdrawal.Status.CREATED, created_at__lt=timezone.now() - timedelta(minutes=1))
        open_ones = Withdrawal.objects.filter(
            Q(status__in=[Withdrawal.Status.COMMITTED, Withdrawal.Status.PENDING]) | stuck_created,
            destination_type="crypto",
        ).order_by("id")[:100]
        for withdrawal in open_ones:
            lease.progress()  # outside the try: a lost lease ends the run
            try:
                resolved += withdrawal_submit(withdrawal=withdrawal).status in Withdrawal.TERMINAL
            except Exception:  # one broken withdrawal must not stop the others
                logger.exception("could not resolve withdrawal %s", withdrawal.public_id)
    return resolved


@shared_task(name="payments.tasks.wallets_reconcile")
def wallets_reconcile_task() -> int:
    """Single-flight; renewed per wallet (payments.reconciliation calls job_lease_progress)."""
    with job_lease(name="wallets_reconcile", ttl=ITEM_LEASE) as lease:
        return 0 if lease is None else wallets_reconcile()
    return 0  # the lease was lost mid-run: the run that took it over goes on


@shared_task(name="payments.tasks.airtm_withdrawal_settle")
def airtm_withdrawal_settle(withdrawal_pk: int) -> str:
    """After a payout webhook: read the payout at Airtm again and, if it is COMPLETED, sweep."""
    return withdrawal_refresh_airtm(withdrawal=Withdrawal.objects.get(pk=withdrawal_pk)).status


@shared_task(name="payments.tasks.airtm_withdrawals_resolve_pending")
def airtm_withdrawals_resolve_pending() -> int:
    """Every open Airtm withdrawal, read at Airtm again: lost answers found (or created) by code,
    asked-for commits made, states applied, sweeps of completed payouts driven. Each in its own try."""
    finished = 0
    with job_lease(name="airtm_withdrawals_resolve_pending", ttl=ITEM_LEASE) as lease:
        if lease is None:
            return 0
        for withdrawal in airtm_withdrawals_open()[:200]:
            lease.progress()  # outside the try: a lost lease ends the run
            try:
                finished += withdrawal_refresh_airtm(withdrawal=withdrawal).status in Withdrawal.TERMINAL
            except Exception:  # one broken withdrawal must not stop the others
                logger.exception("could not resolve Airtm withdrawal %s", withdrawal.public_id)
    return finished


@shared_task(name="payments.tasks.airtm_reconcile_task")
def airtm_reconcile_task() -> int:
    """Hourly: our top-ups and Airtm withdrawals against Airtm; how many have an OPEN discrepancy."""
    from payments.airtm_reconciliation import airtm_reconcile

    # Single-flight; renewed per record (airtm_compare_all calls job_lease_progress).
    with job_lease(name="airtm_reconcile", ttl=ITEM_LEASE) as lease:
        return 0 if lease is None else len(airtm_reconcile())
    return 0  # the lease was lost mid-run


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
    """Every 60 s: unfinished top-ups read again at Airtm, expired ones canceled, bridges re-driven.
    Single-flight; its loop (payments.topups) is not renewed per item, so its lease is long."""
    with job_lease(name="topups_resolve_pending", ttl=LONG_LEASE) as lease:
        return 0 if lease is None else topups.topups_resolve_pending()
    return 0  # the lease was lost mid-run
