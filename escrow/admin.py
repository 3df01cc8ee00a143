from decimal import Decimal, InvalidOperation

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from backoffice.admin import DriftReportAdmin
from escrow.models import Escrow, EscrowDriftReport, EscrowMilestone, EscrowStep
from escrow.selectors import steps_needing_attention
from escrow.services import escrow_retry_now
from offerhub.admin import ReadOnlyAdmin, dollars, usd
from offerhub.money import STROOPS_PER_UNIT


class EscrowMilestoneInline(admin.TabularInline):
    model = EscrowMilestone
    extra = 0
    can_delete = False
    fields = ("index", "ref", "title", "amount_usd", "chain_status", "evidence", "approved", "disputed", "released")
    readonly_fields = fields
    amount_usd = usd("amount", "amount")

    def has_add_permission(self, request, obj=None):
        return False


class EscrowStepInline(admin.TabularInline):
    model = EscrowStep
    extra = 0
    can_delete = False
    fields = (
        "created_at",
        "action",
        "milestone_index",
        "status",
        "tx_hash",
        "failures",
        "error_code",
        "error_message",
        "next_attempt_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


def _retry_now(modeladmin, request, escrows) -> None:
    """Run the escrows' open steps now (support fixed the cause), through the service, which audits it."""
    queued = sum(escrow_retry_now(escrow=escrow, actor=("SUPPORT", request.user.public_id)) for escrow in escrows)
    idle = len(escrows) - queued
    note = f"; {idle} had no step waiting" if idle else ""
    modeladmin.message_user(request, f"Retrying {queued} escrow(s) now{note}.", messages.SUCCESS)


class RetryNowPermission:
    """ "Retry now" needs escrow.change_escrow (the Support agent has it), while the pages stay
    read-only: ReadOnlyAdmin refuses every change, so the action asks for the permission itself."""

    def has_retry_permission(self, request) -> bool:
        return request.user.is_active and request.user.has_perm("escrow.change_escrow")


class EscrowNeedsAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Yes: a step keeps failing")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=steps_needing_attention().values("escrow_id"))
        return queryset


@admin.register(Escrow)
class EscrowAdmin(RetryNowPermission, ReadOnlyAdmin):
    list_display = ("public_id", "engagement_id", "type", "status", "amount_usd", "balance_usd", "contract_id")
    exclude = ("amount", "balance")
    readonly_fields = ("amount_usd", "balance_usd")
    amount_usd = usd("amount", "amount")
    balance_usd = usd("balance", "in the contract (as last seen)")
    list_filter = (EscrowNeedsAttentionFilter, "status", "type")
    search_fields = ("public_id", "engagement_id", "contract_id", "buyer__email", "seller__email")
    inlines = [EscrowMilestoneInline, EscrowStepInline]
    actions = ["retry_now"]

    @admin.action(description="Retry the waiting steps now (skip their back-off)", permissions=["retry"])
    def retry_now(self, request, queryset):
        _retry_now(self, request, list(queryset.order_by("pk")))


class StepNeedsAttentionFilter(admin.SimpleListFilter):
    """Open steps whose runs keep failing; they retry on their own, with back-off."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Yes: failed repeatedly"), ("retrying", "Retrying after a failure")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return steps_needing_attention(queryset)
        if self.value() == "retrying":
            return queryset.filter(status__in=EscrowStep.OPEN, failures__gt=0)
        return queryset


@admin.register(EscrowStep)
class EscrowStepAdmin(RetryNowPermission, ReadOnlyAdmin):
    list_display = (
        "created_at",
        "escrow",
        "action",
        "status",
        "failures",
        "error_code",
        "error_message",
        "next_attempt_at",
        "tx_hash",
    )
    list_filter = (StepNeedsAttentionFilter, "status", "action")
    search_fields = ("key", "tx_hash", "escrow__public_id", "escrow__engagement_id")
    list_select_related = ("escrow",)
    exclude = ("signed_xdr",)
    actions = ["retry_now"]

    @admin.action(description="Retry the selected steps' escrows now (skip their back-off)", permissions=["retry"])
    def retry_now(self, request, queryset):
        escrows = Escrow.objects.filter(pk__in=queryset.values("escrow_id")).order_by("pk")
        _retry_now(self, request, list(escrows))


# How a drift report's field names read to support.
FLAG_WORDS = {
    "disputed": "marked disputed",
    "released": "released",
    "resolved": "resolved",
    "approved": "approved",
    "status": "status",
    "evidence": "evidence",
}


def _said(value) -> str:
    if value is None or value == "":
        return "nothing"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"\u201c{value}\u201d"


def _usd_units(value) -> str:
    """A balance as the comparison stores it (USDC units, a string) in dollars."""
    try:
        return dollars(int(Decimal(str(value)) * STROOPS_PER_UNIT))
    except (InvalidOperation, ValueError, TypeError):
        return _said(value)


def drift_sentence(field: str, ours, chain) -> str:
    """One difference of an EscrowDriftReport (escrow.sync.escrow_differences) in plain words."""
    if field == "contract":
        return f"The contract {ours} was not found on chain."
    if field == "balance":
        return f"The contract holds {_usd_units(chain)}; our record says {_usd_units(ours)}."
    if field == "milestones.count":
        return f"The contract has {chain} milestone(s); our record has {ours}."
    subject, _, flag = field.rpartition(".")
    if subject.startswith("milestones["):
        index = subject[len("milestones[") : -1]
        subject = f"Milestone {int(index) + 1}" if index.isdigit() else subject
    else:
        subject = "The escrow"
    words = FLAG_WORDS.get(flag, flag)
    if isinstance(ours, bool) or isinstance(chain, bool):
        return f"{subject} {words}: on chain {_said(chain)}, in our record {_said(ours)}."
    return f"{subject}, {words}: on chain {_said(chain)}, in our record {_said(ours)}."


@admin.register(EscrowDriftReport)
class EscrowDriftReportAdmin(DriftReportAdmin):
    """Our escrow record and the contract disagree. Support investigates and notes what it did."""

    run_target = "escrows"
    list_display = ("escrow_link", "discrepancy", "status", "detected_at", "last_seen_at")
    fields = ("escrow_link", "status", "note", "detected_at", "last_seen_at", "resolved_at")
    readonly_fields = fields
    list_select_related = ("escrow",)
    search_fields = ("escrow__public_id", "escrow__engagement_id", "escrow__contract_id")

    @admin.display(description="escrow (order)", ordering="escrow__public_id")
    def escrow_link(self, obj):
        url = reverse("admin:escrow_escrow_change", args=[obj.escrow_id])
        return format_html('<a href="{}">{}</a> (order {})', url, obj.escrow.public_id, obj.escrow.engagement_id)

    def discrepancies(self, obj) -> list[str]:
        differences = obj.differences if isinstance(obj.differences, dict) else {}
        return [
            drift_sentence(field, (values or {}).get("ours"), (values or {}).get("chain"))
            for field, values in differences.items()
        ]
