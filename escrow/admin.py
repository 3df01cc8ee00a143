from django.contrib import admin
from django.utils import timezone

from escrow.models import Escrow, EscrowDriftReport, EscrowMilestone, EscrowStep
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
    fields = ("created_at", "action", "milestone_index", "status", "tx_hash", "attempts", "error_code")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Escrow)
class EscrowAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "engagement_id", "type", "status", "amount_usd", "balance_usd", "contract_id")
    amount_usd = usd("amount", "amount (USD)")
    balance_usd = usd("balance", "in contract (USD)")
    list_filter = ("status", "type")
    search_fields = ("public_id", "engagement_id", "contract_id", "buyer__email", "seller__email")
    inlines = [EscrowMilestoneInline, EscrowStepInline]


@admin.register(EscrowStep)
class EscrowStepAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "escrow", "action", "status", "tx_hash", "attempts", "error_code")
    list_filter = ("status", "action")
    search_fields = ("key", "tx_hash", "escrow__public_id", "escrow__engagement_id")
    list_select_related = ("escrow",)
    exclude = ("signed_xdr",)


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
