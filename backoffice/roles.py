"""The support staff's roles: each group and the permissions it grants, defined once here.

The data migration `backoffice.0001_support_roles` creates the groups on a fresh database, and a
post_migrate receiver (BackofficeConfig.ready) re-applies this definition after every migrate,
so the groups follow the code: change a role here, never by editing the group in the admin
(the next migrate would undo it).

Plain data and two functions taking the models as arguments, so the migration can use its
historical models and the receiver the current ones.
"""

from django.db.models import Q

SUPPORT_AGENT = "Support agent"
SUPPORT_LEAD = "Support lead"

# "app_label.codename", as user.has_perm() spells them.
AGENT_PERMISSIONS = (
    # Disputes: the queue, the case page, assigning and resolving (a change through the services).
    "disputes.view_dispute",
    "disputes.change_dispute",
    "disputes.view_disputeevidence",
    "disputes.add_disputeevidence",
    "disputes.change_disputeevidence",
    "disputes.view_disputemessage",
    "disputes.add_disputemessage",
    "disputes.change_disputemessage",
    # Orders and who is involved, read-only (the admins of these models never edit).
    "marketplace.view_order",
    "marketplace.view_ordermilestone",
    "marketplace.view_listing",
    "marketplace.view_listingmilestone",
    "marketplace.view_listingimage",
    "marketplace.view_category",
    "marketplace.view_user",
    # Reviews: read them, and hide one with a reason (change unlocks only "Hide", through review_hide).
    "marketplace.view_review",
    "marketplace.change_review",
    # Manual release or refund of an order's escrow outside a dispute.
    "marketplace.settle_order_manually",
    # Escrows and their steps, read-only; change_escrow only unlocks "Retry now" (the page stays read-only).
    "escrow.view_escrow",
    "escrow.change_escrow",
    "escrow.view_escrowmilestone",
    "escrow.view_escrowstep",
    # What happened, and who did it.
    "offerhub.view_auditlog",
    "offerhub.view_event",
)

LEAD_PERMISSIONS = (
    *AGENT_PERMISSIONS,
    # Reconciliation: run it, read the reports, acknowledge and resolve them (through the services)...
    "payments.view_reconciliationreport",
    "payments.change_reconciliationreport",
    "escrow.view_escrowdriftreport",
    "escrow.change_escrowdriftreport",
    "payments.view_airtmdiscrepancy",
    "payments.change_airtmdiscrepancy",
    # ...and the ledger and wallets a drift is investigated in, read-only.
    "payments.view_ledgeraccount",
    "payments.view_journalentry",
    "payments.view_posting",
    "payments.view_hold",
    "payments.view_wallet",
    "payments.view_withdrawal",
    # Airtm top-ups: read them, and "Refresh from Airtm" (reads Airtm, applies what it says).
    "payments.view_topup",
    # The integrating marketplaces' API keys: create and revoke (keys are never deleted).
    "offerhub.view_apikey",
    "offerhub.add_apikey",
    "offerhub.change_apikey",
    # Provider webhook deliveries: read them, and "Process again" (change unlocks only the action).
    "offerhub.view_webhookdelivery",
    "offerhub.change_webhookdelivery",
    # Outgoing webhooks: endpoints (create, disable, enable, re-send failed; never edited or deleted
    # here) and their deliveries (read; change unlocks only "Re-send").
    "hooks.view_webhookendpoint",
    "hooks.add_webhookendpoint",
    "hooks.change_webhookendpoint",
    "hooks.view_outgoingdelivery",
    "hooks.change_outgoingdelivery",
    # Members' sessions: who is logged in, and "Sign out everywhere" on members (a lost phone, a
    # stolen password). delete unlocks only that action: the sessions list has no other page.
    "marketplace.view_visitorsession",
    "marketplace.delete_visitorsession",
    # The sandbox's injected provider faults (only where the sandbox is installed).
    "sandbox.view_sandboxfault",
    "sandbox.add_sandboxfault",
    "sandbox.change_sandboxfault",
    "sandbox.delete_sandboxfault",
)

ROLES = {SUPPORT_AGENT: AGENT_PERMISSIONS, SUPPORT_LEAD: LEAD_PERMISSIONS}

# Apps that may be absent (the sandbox is installed only with OFFERHUB_SANDBOX): their
# permissions are skipped there rather than reported missing.
OPTIONAL_APPS = {"sandbox"}


def role_permissions(permission_model, names):
    """The Permission rows for "app_label.codename" names (one query)."""
    match = Q(pk__in=[])
    for name in names:
        app_label, codename = name.split(".", 1)
        match |= Q(content_type__app_label=app_label, codename=codename)
    return permission_model.objects.filter(match)


def roles_apply(group_model, permission_model, *, installed_apps: set[str], using: str = "default") -> list[str]:
    """Create each group if missing and give it exactly its role's permissions.

    Returns the permissions that do not exist (of installed apps): a typo, or a model renamed.
    """
    missing = []
    for group_name, names in ROLES.items():
        wanted = [name for name in names if name.split(".", 1)[0] in installed_apps]
        permissions = list(role_permissions(permission_model, wanted).using(using).select_related("content_type"))
        found = {f"{p.content_type.app_label}.{p.codename}" for p in permissions}
        missing += [name for name in wanted if name not in found]
        group, _ = group_model.objects.using(using).get_or_create(name=group_name)
        group.permissions.set(permissions)
    return sorted(set(missing))
