"""The support roles (backoffice/roles.py): the groups the data migration creates, what a Support
agent can open in the backoffice and what only a Support lead can, and the audit log naming actors."""

import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.urls import reverse

from backoffice.roles import AGENT_PERMISSIONS, LEAD_PERMISSIONS, SUPPORT_AGENT, SUPPORT_LEAD
from disputes.models import Dispute
from escrow.models import Escrow, EscrowDriftReport
from marketplace.models import Order, User
from offerhub.models import ApiKey, AuditLog
from offerhub.services import api_key_create, audit_record
from payments.models import ReconciliationReport, Wallet
from tests.escrow.test_lifecycle import USD
from tests.factories import ListingFactory, UserFactory

pytestmark = pytest.mark.django_db

LEAD_ONLY_PAGES = {
    "reconciliation reports": "admin:payments_reconciliationreport_changelist",
    "drift reports": "admin:escrow_escrowdriftreport_changelist",
    "API keys": "admin:offerhub_apikey_changelist",
    "sandbox faults": "admin:sandbox_sandboxfault_changelist",
}


def staff_client(client, role: str, **fields):
    """A logged-in staff member (not a superuser) whose only permissions are its role's group."""
    user = UserFactory(is_staff=True, **fields)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def agent(client):
    return staff_client(client, SUPPORT_AGENT, display_name="Sofia Support")


@pytest.fixture
def lead(client):
    return staff_client(client, SUPPORT_LEAD, display_name="Leo Lead")


@pytest.fixture
def dispute():
    order = Order.objects.create(buyer=UserFactory(), seller=UserFactory(), amount=30 * USD, title="A logo")
    order.milestones.create(position=0, ref="m1", title="The logo", amount=30 * USD)
    return Dispute.objects.create(order=order, opened_by="BUYER", reason="QUALITY_ISSUE")


def names(permissions) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in permissions.select_related("content_type")}


def test_the_groups_exist_after_migrate_with_exactly_their_roles_permissions():
    agent, lead = Group.objects.get(name=SUPPORT_AGENT), Group.objects.get(name=SUPPORT_LEAD)
    assert names(agent.permissions) == set(AGENT_PERMISSIONS)  # every name exists: no typo dropped silently
    assert names(lead.permissions) == set(LEAD_PERMISSIONS)
    assert names(agent.permissions) < names(lead.permissions)
    assert "marketplace.settle_order_manually" in names(agent.permissions)
    assert not names(agent.permissions) & {"payments.view_reconciliationreport", "offerhub.view_apikey"}


def test_migrate_puts_the_groups_back_to_their_definition_and_adds_permissions_created_later():
    agent = Group.objects.get(name=SUPPORT_AGENT)
    agent.permissions.add(Permission.objects.get(codename="view_apikey"))  # edited by hand in the admin
    # A permission that does not exist yet, as for a model a later migration adds.
    Permission.objects.get(codename="view_disputemessage").delete()
    Group.objects.get(name=SUPPORT_LEAD).delete()

    call_command("migrate", verbosity=0)

    assert names(Group.objects.get(name=SUPPORT_AGENT).permissions) == set(AGENT_PERMISSIONS)
    assert names(Group.objects.get(name=SUPPORT_LEAD).permissions) == set(LEAD_PERMISSIONS)


def test_an_agent_works_the_dispute_queue_and_the_dispute_page(agent, dispute):
    queue = agent.get(reverse("admin:disputes_dispute_changelist"))
    assert queue.status_code == 200 and dispute.public_id in queue.content.decode()
    page = agent.get(reverse("admin:disputes_dispute_change", args=[dispute.pk]))
    assert page.status_code == 200 and dispute.public_id in page.content.decode()
    assert agent.user.has_perm("marketplace.settle_order_manually")


def test_an_agent_reads_orders_but_cannot_save_them(agent, dispute):
    order = dispute.order
    listing = agent.get(reverse("admin:marketplace_order_changelist"))
    assert listing.status_code == 200 and order.public_id in listing.content.decode()
    change_url = reverse("admin:marketplace_order_change", args=[order.pk])
    page = agent.get(change_url)
    assert page.status_code == 200
    content = page.content.decode()
    assert "The logo" in content and "30.00" in content  # the order with its milestones
    assert 'name="_save"' not in content  # read-only: nothing to save
    assert agent.post(change_url, {"title": "changed"}).status_code == 403
    assert Order.objects.get(pk=order.pk).title == "A logo"
    assert agent.get(reverse("admin:marketplace_order_add")).status_code == 403
    for name in ("admin:marketplace_user_changelist", "admin:marketplace_listing_changelist"):
        assert agent.get(reverse(name)).status_code == 200, name
    listing = ListingFactory()
    listing.milestones.create(position=0, title="Concepts", amount_cents=1000)
    for name, pk in (
        ("admin:marketplace_user_change", order.buyer_id),
        ("admin:marketplace_listing_change", listing.pk),
    ):
        page = agent.get(reverse(name, args=[pk]))
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode(), name


def test_an_agent_reads_the_audit_log_escrows_and_steps_and_may_retry_an_escrow(agent):
    buyer, seller = UserFactory(), UserFactory()
    escrow = Escrow.objects.create(
        engagement_id="ord_x", type="single-release", title="x", buyer=buyer, seller=seller, amount=30 * USD
    )
    audit_record(action="order.created", resource_type="Order", resource_id="ord_x", actor_type="SYSTEM", actor_id="t")
    for name in ("admin:offerhub_auditlog_changelist", "admin:offerhub_event_changelist"):
        assert agent.get(reverse(name)).status_code == 200, name
    audit = agent.get(reverse("admin:offerhub_auditlog_change", args=[AuditLog.objects.get().pk]))
    assert audit.status_code == 200 and 'name="_save"' not in audit.content.decode()

    escrows = agent.get(reverse("admin:escrow_escrow_changelist"))
    assert escrows.status_code == 200
    assert "retry_now" in dict(escrows.context["action_form"].fields["action"].choices)
    assert agent.get(reverse("admin:escrow_escrowstep_changelist")).status_code == 200
    page = agent.get(reverse("admin:escrow_escrow_change", args=[escrow.pk])).content.decode()
    assert "$30.00" in page and "300000000" not in page  # dollars, never stroops
    assert 'name="_save"' not in page


def test_staff_without_change_escrow_are_not_offered_retry_now(client):
    user = UserFactory(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_escrow"))
    client.force_login(user)
    escrows = client.get(reverse("admin:escrow_escrow_changelist"))
    assert escrows.status_code == 200
    assert escrows.context["action_form"] is None  # no action at all: retry_now was the only one


def test_an_agent_cannot_reach_reconciliation_api_keys_or_sandbox_faults(agent):
    report, drift = lead_only_rows()
    pages = {
        **LEAD_ONLY_PAGES,
        "a reconciliation report": ("admin:payments_reconciliationreport_change", report.pk),
        "a drift report": ("admin:escrow_escrowdriftreport_change", drift.pk),
        "an API key": ("admin:offerhub_apikey_change", ApiKey.objects.get().pk),
        "a new API key": "admin:offerhub_apikey_add",
        "a new fault": "admin:sandbox_sandboxfault_add",
    }
    for what, name in pages.items():
        url = reverse(name[0], args=[name[1]]) if isinstance(name, tuple) else reverse(name)
        assert agent.get(url).status_code == 403, what
    for name in ("admin:payments_reconciliationreport_run", "admin:escrow_escrowdriftreport_run"):
        assert agent.post(reverse(name)).status_code == 403, name
    note = reverse("admin:payments_reconciliationreport_note", args=[report.pk])
    assert agent.post(note, {"note": "fixed", "decision": "resolve"}).status_code == 403
    assert ReconciliationReport.objects.get().status == "OPEN"
    assert not AuditLog.objects.filter(action__startswith="reconciliation.").exists()

    index = agent.get(reverse("admin:index")).content.decode()
    for what, name in LEAD_ONLY_PAGES.items():
        assert reverse(name) not in index, what
    assert reverse("admin:disputes_dispute_changelist") in index
    assert reverse("admin:offerhub_auditlog_changelist") in index


def lead_only_rows():
    user = UserFactory()
    wallet = Wallet.objects.create(user=user, public_key="G" + "B" * 55, encrypted_secret="x", key_version=1)
    report = ReconciliationReport.objects.create(
        wallet=wallet, chain_balance=15 * USD, ledger_balance=10 * USD, difference=5 * USD
    )
    escrow = Escrow.objects.create(
        engagement_id="ord_drift", type="single-release", title="x", buyer=user, seller=UserFactory(), amount=USD
    )
    drift = EscrowDriftReport.objects.create(escrow=escrow, differences={"balance": {"ours": "1", "chain": "2"}})
    api_key_create(name="Shop backend", scopes=["read"], marketplace_id="", actor_type="SYSTEM", actor_id="test")
    return report, drift


def test_a_lead_has_the_agents_pages_and_reconciliation_api_keys_and_faults(lead, dispute):
    lead_only_rows()
    index = lead.get(reverse("admin:index")).content.decode()
    for what, name in LEAD_ONLY_PAGES.items():
        assert lead.get(reverse(name)).status_code == 200, what
        assert reverse(name) in index, what
    assert lead.get(reverse("admin:offerhub_apikey_add")).status_code == 200
    assert lead.get(reverse("admin:sandbox_sandboxfault_add")).status_code == 200
    assert lead.get(reverse("admin:disputes_dispute_change", args=[dispute.pk])).status_code == 200
    assert lead.get(reverse("admin:marketplace_order_changelist")).status_code == 200
    assert lead.get(reverse("admin:offerhub_auditlog_changelist")).status_code == 200
    fault = {"service": "trustless-work", "method": "", "path_contains": "", "latency_ms": "0", "status_code": "503"}
    fault |= {"timeout_seconds": "30", "remaining": "1", "enabled": "on"}
    response = lead.post(reverse("admin:sandbox_sandboxfault_add"), fault)
    assert response.status_code == 302, response.content.decode()
    created = AuditLog.objects.get(action="sandbox.fault_created")
    assert (created.actor_type, created.actor_id) == ("SUPPORT", lead.user.public_id)
    # Still not a superuser: the rest of the sandbox and the raw records stay out of reach.
    assert lead.get(reverse("admin:sandbox_sandboxaccount_changelist")).status_code == 403
    assert lead.get(reverse("admin:offerhub_idempotencyrecord_changelist")).status_code == 403


def test_the_demo_support_logins_are_staff_in_their_groups_and_not_superusers(capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    support = User.objects.get(email="support@demo.offerhub.test")
    lead = User.objects.get(email="lead@demo.offerhub.test")
    assert (support.is_staff, support.is_superuser) == (True, False)
    assert (lead.is_staff, lead.is_superuser) == (True, False)
    assert list(support.groups.values_list("name", flat=True)) == [SUPPORT_AGENT]
    assert list(lead.groups.values_list("name", flat=True)) == [SUPPORT_LEAD]
    assert support.has_perm("disputes.change_dispute") and not support.has_perm("offerhub.view_apikey")
    assert lead.has_perm("offerhub.view_apikey")
    output = capsys.readouterr().out
    assert re.search(r"support@demo\.offerhub\.test\s+support agent, backoffice at /admin/", output)
    assert re.search(r"lead@demo\.offerhub\.test\s+support lead, backoffice at /admin/", output)
    assert re.search(r"buyer@demo\.offerhub\.test\s+buyer and seller\n", output)


def test_a_demo_support_login_left_a_superuser_by_an_older_seed_becomes_an_agent():
    User.objects.create_superuser("support@demo.offerhub.test", "offerhub-demo", display_name="Sofia Support")
    call_command("seed_demo")
    support = User.objects.get(email="support@demo.offerhub.test")
    assert (support.is_staff, support.is_superuser) == (True, False)
    assert support.groups.get().name == SUPPORT_AGENT


def audit_rows(agent_user):
    """Audit rows by a staff member, a member, an API key and the system; the actor as the log shows it."""
    member = UserFactory(display_name="Bea Buyer")
    key, _ = api_key_create(name="Shop backend", scopes=["read"], marketplace_id="", actor_type="SYSTEM", actor_id="x")
    actors = [
        ("SUPPORT", agent_user.public_id, "Sofia Support (staff)"),
        ("USER", member.public_id, "Bea Buyer (member)"),
        ("API_KEY", key.id, "Shop backend (API key)"),
        ("SYSTEM", "reconciler", "reconciler (system)"),
        ("SUPPORT", "usr_gone", "usr_gone (staff)"),  # an id that no longer names anyone
    ]
    for actor_type, actor_id, _ in actors:
        audit_record(
            action="test.acted", resource_type="Test", resource_id="1", actor_type=actor_type, actor_id=actor_id
        )
    return [shown for _, _, shown in actors]


def test_the_audit_log_names_each_actor(agent):
    expected = audit_rows(agent.user)
    page = agent.get(reverse("admin:offerhub_auditlog_changelist"), {"q": "test.acted"})
    cells = re.findall(r'<td class="field-actor">([^<]*)</td>', page.content.decode())
    assert sorted(cells) == sorted(expected)
    row = AuditLog.objects.get(actor_id=agent.user.public_id)
    detail = agent.get(reverse("admin:offerhub_auditlog_change", args=[row.pk])).content.decode()
    assert "Sofia Support (staff)" in detail


def test_the_audit_log_names_its_actors_in_a_bounded_number_of_queries(agent, django_assert_max_num_queries):
    for n in range(30):
        staff = UserFactory(is_staff=True, display_name=f"Agent {n}")
        audit_record(
            action="test.acted",
            resource_type="Test",
            resource_id=str(n),
            actor_type="SUPPORT",
            actor_id=staff.public_id,
        )
    url = reverse("admin:offerhub_auditlog_changelist")
    # session, user, 2 permissions, 2 counts, the page, date hierarchy, filter: the same for 3 rows or 100
    with django_assert_max_num_queries(10):
        page = agent.get(url).content.decode()
    assert all(f"Agent {n} (staff)" in page for n in range(30))
