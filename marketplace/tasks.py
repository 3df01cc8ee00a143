"""Thin Celery entry points for the marketplace."""

from datetime import timedelta

from celery import shared_task

from marketplace.orders import orders_release_inspected
from offerhub.leases import job_lease

# orders_release_inspected does not renew its lease: longer than any run (200 releases) should take.
RELEASE_LEASE = timedelta(minutes=30)


@shared_task
def orders_release_inspected_task() -> int:
    """Single-flight: two runs would ask to release the same orders side by side."""
    with job_lease(name="orders_release_inspected", ttl=RELEASE_LEASE) as lease:
        return 0 if lease is None else orders_release_inspected()
    return 0  # the lease was lost mid-run
