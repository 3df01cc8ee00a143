"""Thin Celery entry points for the marketplace."""

from celery import shared_task

from marketplace.orders import orders_release_inspected


@shared_task
def orders_release_inspected_task() -> int:
    return orders_release_inspected()
