"""Celery tasks of the sandbox providers (registered only when the sandbox app is installed)."""

from celery import shared_task

from sandbox.airtm_engine import airtm_payouts_advance, airtm_webhook_attempt, airtm_webhooks_deliver_due


@shared_task(name="sandbox.tasks.airtm_webhook_deliver_task")
def airtm_webhook_deliver_task(delivery_id: int) -> None:
    """The first attempt, right after the change commits; retries come from the beat task."""
    airtm_webhook_attempt(delivery_id=delivery_id)


@shared_task(name="sandbox.tasks.airtm_webhooks_deliver_due_task")
def airtm_webhooks_deliver_due_task() -> int:
    return airtm_webhooks_deliver_due()


@shared_task(name="sandbox.tasks.airtm_payouts_advance_task")
def airtm_payouts_advance_task() -> int:
    return airtm_payouts_advance()
