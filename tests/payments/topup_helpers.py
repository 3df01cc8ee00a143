"""Shared set-up for the top-up tests: a linked member, the sandbox Airtm over HTTP, its webhooks."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.models import User
from offerhub.models import Event, WebhookDelivery
from offerhub.money import money_dollars
from payments.models import JournalEntry, LedgerAccount, Topup

WEBHOOK_SECRET = "whsec_c2FuZGJveC1haXJ0bS13ZWJob29rLXNlY3JldC0zMg=="


@dataclass
class Sandbox:
    """The sandbox Airtm the live server serves. Its webhooks first go to a closed port (the suite's
    default); `deliver` sends one to our endpoint when a test says so, in the order it chooses."""

    url: str

    def payins(self, code: str):
        from sandbox.models import SandboxAirtmPayin

        return list(SandboxAirtmPayin.objects.filter(code=code))

    def pay(self, topup: Topup, outcome: str = "pay"):
        from sandbox.airtm_engine import airtm_payin_settle

        return airtm_payin_settle(airtm_id=Topup.objects.get(pk=topup.pk).airtm_payin_id, outcome=outcome)

    def pending_webhooks(self, topup: Topup):
        from sandbox.models import SandboxAirtmWebhookDelivery

        payin_id = Topup.objects.get(pk=topup.pk).airtm_payin_id
        return list(SandboxAirtmWebhookDelivery.objects.filter(resource_id=payin_id, status="pending").order_by("pk"))

    def deliver(self, delivery) -> int:
        """Send one queued webhook now (its earlier attempt went to a closed port); our answer's status."""
        from sandbox.airtm_engine import airtm_webhook_attempt
        from sandbox.models import SandboxAirtmWebhookDelivery

        SandboxAirtmWebhookDelivery.objects.filter(pk=delivery.pk).update(url=f"{self.url}/api/v1/webhooks/airtm")
        sent = airtm_webhook_attempt(delivery_id=delivery.pk, now=timezone.now() + timedelta(days=1))
        return sent.last_response_status

    def deliver_all(self, topup: Topup) -> list[int]:
        return [self.deliver(delivery) for delivery in self.pending_webhooks(topup)]

    def resend(self, delivery, *, new_id: bool) -> int:
        """Airtm sending an event again: the same Svix message (a retry) or a new one."""
        from sandbox.models import SandboxAirtmWebhookDelivery

        delivery = SandboxAirtmWebhookDelivery.objects.get(pk=delivery.pk)
        delivery.status, delivery.next_attempt_at = "pending", timezone.now()
        if new_id:
            delivery.pk = None
            delivery.msg_id = f"msg_{uuid.uuid4().hex}"
        delivery.save()
        return self.deliver(delivery)


@pytest.fixture(name="sandbox")
def sandbox_fixture(airtm, live_server, settings) -> Sandbox:
    settings.SITE_URL = live_server.url
    settings.OFFERHUB_AIRTM_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.OFFERHUB_WEBHOOKS_INSECURE = False
    settings.OFFERHUB_AIRTM_TIMEOUT_SECONDS = 5
    return Sandbox(url=live_server.url)


def link(user: User) -> User:
    from sandbox.airtm_engine import airtm_user_create

    account = airtm_user_create(email=f"{user.public_id.lower()}@airtm.sandbox")
    User.objects.filter(pk=user.pk).update(
        airtm_user_id=account.airtm_id, airtm_email=account.email, airtm_linked_at=timezone.now()
    )
    return User.objects.get(pk=user.pk)


@pytest.fixture(name="member")
def member_fixture(sandbox, funded_user) -> User:
    """A member with an active wallet (where the bridge pays) and a linked Airtm account."""
    return link(funded_user("0"))


def airtm_credits(user: User) -> list[JournalEntry]:
    """Every journal entry that credited the member's available balance (a member of these
    tests gets money from top-ups only)."""
    from payments.ledger import ledger_account

    account = ledger_account(kind=LedgerAccount.Kind.USER_AVAILABLE, user=user)
    return list(JournalEntry.objects.filter(postings__account=account, postings__amount__gt=0).distinct())


def available(user: User):
    from payments.balances import balance_snapshot

    return money_dollars(balance_snapshot(user=user).available)


def events(topup: Topup) -> list[str]:
    return list(Event.objects.filter(aggregate_id=topup.public_id).order_by("pk").values_list("type", flat=True))


def balance_credits(user: User) -> list[dict]:
    return [
        e.payload
        for e in Event.objects.filter(type="balance.credited", aggregate_id=user.public_id).order_by("pk")
        if e.payload.get("source") == "topup"
    ]


def deliveries(status=None):
    rows = WebhookDelivery.objects.filter(provider="airtm")
    return rows.filter(status=status) if status else rows
