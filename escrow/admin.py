from django.contrib import admin, messages
from django.utils import timezone

from escrow.models import Escrow, EscrowDriftReport, EscrowMilestone, EscrowStep
from escrow.selectors import steps_needing_attention
from escrow.services import escrow_retry_now
from offerhub.admin import ReadOnlyAdmin
from payments.admin import usd


class EscrowMilestoneInline(admin.TabularInline):
    model = EscrowMilestone
    extra = 0
    can_delete = False
    fields = ("index", "ref", "title", "amount", "chain_status", "evidence", "approved", "disputed", "released")
    readonly_fields = fields

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
class EscrowAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "engagement_id", "type", "status", "amount_usd", "balance_usd", "contract_id")
    amount_usd = usd("amount", "amount (USD)")
    balance_usd = usd("balance", "in contract (USD)")
    list_filter = (EscrowNeedsAttentionFilter, "status", "type")
    search_fields = ("public_id", "engagement_id", "contract_id", "buyer__email", "seller__email")
    inlines = [EscrowMilestoneInline, EscrowStepInline]
    actions = ["retry_now"]

    @admin.action(description="Retry the waiting steps now (skip their back-off)")
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
class EscrowStepAdmin(ReadOnlyAdmin):
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

    @admin.action(description="Retry the selected steps' escrows now (skip their back-off)")
    def retry_now(self, request, queryset):
        escrows = Escrow.objects.filter(pk__in=queryset.values("escrow_id")).order_by("pk")
        _retry_now(self, request, list(escrows))


@admin.register(EscrowDriftReport)
class EscrowDriftReportAdmin(admin.ModelAdmin):
    """Our record and the contract disagree. Support investigates and notes what it did."""

    list_display = ("escrow", "status", "detected_at", "last_seen_at")
    list_filter = ("status",)
    readonly_fields = ("escrow", "differences", "detected_at", "last_seen_at", "resolved_at")
    fields = ("escrow", "differences", "status", "note", "detected_at", "last_seen_at", "resolved_at")
    actions = ["mark_resolved"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Mark resolved (after investigating)")
    def mark_resolved(self, request, queryset):
        queryset.filter(status="OPEN").update(status="RESOLVED", resolved_at=timezone.now())
