"""The sandbox's state, for developers and support in sandbox mode. Faults are edited here (the
Support lead may); the simulated chain is read-only: it changes only through its API.
Amounts read as money: USDC in dollars, XLM in XLM, never in stroops."""

from decimal import Decimal

from django.contrib import admin
from django.forms.models import model_to_dict

from offerhub.admin import ReadOnlyAdmin, dollars
from offerhub.money import STROOPS_PER_UNIT
from offerhub.services import audit_record
from sandbox.models import (
    SandboxAccount,
    SandboxAirtmPayin,
    SandboxAirtmPayout,
    SandboxAirtmPayoutEvent,
    SandboxAirtmUser,
    SandboxAirtmWebhookDelivery,
    SandboxFault,
    SandboxPayment,
    SandboxTransaction,
    SandboxTrustline,
)

STROOPS_PER_CENT = STROOPS_PER_UNIT // 100


def asset_amount(stroops: int, asset_code: str) -> str:
    """USDC as "$12.50"; any other asset (XLM when the code is blank) as "1.5 XLM"."""
    if asset_code == "USDC":
        return dollars(stroops)
    units = (Decimal(stroops) / STROOPS_PER_UNIT).normalize()
    return f"{units:f} {asset_code or 'XLM'}"


@admin.register(SandboxFault)
class SandboxFaultAdmin(admin.ModelAdmin):
    list_display = ("__str__", "service", "method", "path_contains", "status_code", "timeout", "remaining", "enabled")
    list_editable = ("enabled",)
    list_filter = ("service", "enabled")

    # Faults change how the providers answer everyone: each change is audited with who made it
    # (the admin's own views run these inside their transaction).
    def _audit(self, request, fault, action: str, *, after: bool = True) -> None:
        audit_record(
            action=f"sandbox.fault_{action}",
            resource_type="SandboxFault",
            resource_id=str(fault.pk),
            actor_type="SUPPORT",
            actor_id=request.user.public_id,
            payload_after=model_to_dict(fault) if after else None,
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._audit(request, obj, "changed" if change else "created")

    def delete_model(self, request, obj):
        self._audit(request, obj, "deleted", after=False)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for fault in queryset:
            self._audit(request, fault, "deleted", after=False)
        super().delete_queryset(request, queryset)


class TrustlineInline(admin.TabularInline):
    model = SandboxTrustline
    extra = 0
    fields = ("asset_code", "asset_issuer", "balance_display", "limit_display", "sponsor")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="balance")
    def balance_display(self, obj):
        return asset_amount(obj.balance, obj.asset_code)

    @admin.display(description="limit")
    def limit_display(self, obj):
        return asset_amount(obj.limit, obj.asset_code)


@admin.register(SandboxAccount)
class SandboxAccountAdmin(ReadOnlyAdmin):
    list_display = ("account_id", "xlm", "sequence", "num_subentries", "num_sponsoring", "sponsor")
    exclude = ("xlm_balance",)
    readonly_fields = ("xlm",)
    search_fields = ("account_id",)
    inlines = [TrustlineInline]

    @admin.display(description="XLM balance", ordering="xlm_balance")
    def xlm(self, obj):
        return asset_amount(obj.xlm_balance, "")


@admin.register(SandboxTransaction)
class SandboxTransactionAdmin(ReadOnlyAdmin):
    list_display = ("hash", "ledger", "source_account", "successful", "fee", "created_at")
    exclude = ("fee_charged", "max_fee")
    readonly_fields = ("fee", "max_fee_display")
    list_filter = ("successful",)
    search_fields = ("hash", "source_account")

    @admin.display(description="fee charged", ordering="fee_charged")
    def fee(self, obj):
        return asset_amount(obj.fee_charged, "")

    @admin.display(description="max fee")
    def max_fee_display(self, obj):
        return asset_amount(obj.max_fee, "")


@admin.register(SandboxPayment)
class SandboxPaymentAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "from_account", "to_account", "amount_display", "created_at")
    exclude = ("amount",)
    readonly_fields = ("amount_display",)
    search_fields = ("from_account", "to_account", "transaction__hash")

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj):
        return asset_amount(obj.amount, obj.asset_code)


# --- Sandbox Airtm: read-only, amounts in dollars (stored in cents, as Airtm counts them).


def cents(value: int | None) -> str:
    return dollars(None if value is None else value * STROOPS_PER_CENT)


@admin.register(SandboxAirtmUser)
class SandboxAirtmUserAdmin(ReadOnlyAdmin):
    list_display = ("email", "first_name", "last_name", "country", "status", "is_verified", "payout_outcome")
    list_filter = ("status", "is_verified", "payout_outcome")
    search_fields = ("email", "airtm_id")


@admin.register(SandboxAirtmPayin)
class SandboxAirtmPayinAdmin(ReadOnlyAdmin):
    list_display = ("code", "airtm_id", "status", "amount", "created_at", "updated_at")
    exclude = ("amount_cents", "items")
    readonly_fields = ("amount",)
    list_filter = ("status",)
    search_fields = ("code", "airtm_id")

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj):
        return cents(obj.amount_cents)


class PayoutEventInline(admin.TabularInline):
    model = SandboxAirtmPayoutEvent
    extra = 0
    fields = ("status", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SandboxAirtmPayout)
class SandboxAirtmPayoutAdmin(ReadOnlyAdmin):
    list_display = ("code", "airtm_id", "recipient", "status", "amount", "enterprise_fee", "created_at")
    exclude = ("amount_cents", "enterprise_fee_cents", "airtm_fee_cents")
    readonly_fields = ("amount", "enterprise_fee", "airtm_fee")
    list_filter = ("status",)
    list_select_related = ("recipient",)
    search_fields = ("code", "airtm_id", "recipient__email")
    inlines = [PayoutEventInline]

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, obj):
        return cents(obj.amount_cents)

    @admin.display(description="enterprise fee")
    def enterprise_fee(self, obj):
        return cents(obj.enterprise_fee_cents)

    @admin.display(description="Airtm fee")
    def airtm_fee(self, obj):
        return cents(obj.airtm_fee_cents)


@admin.register(SandboxAirtmWebhookDelivery)
class SandboxAirtmWebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "msg_id",
        "event_type",
        "status",
        "attempts",
        "last_response_status",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event_type")
    search_fields = ("msg_id", "resource_id")
