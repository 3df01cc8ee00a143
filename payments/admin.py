from django.contrib import admin
from django.utils.html import format_html

from offerhub.admin import ReadOnlyAdmin
from offerhub.money import chain_amount
from payments.models import (
    ChainCursor,
    Hold,
    JournalEntry,
    LedgerAccount,
    PlatformAccount,
    Posting,
    ReconciliationReport,
    Wallet,
    Withdrawal,
)


def usd(field: str, label: str):
    """A list column showing a stroops field in USD (seven decimals, as the chain counts)."""

    @admin.display(description=label, ordering=field)
    def column(self, obj):
        return chain_amount(getattr(obj, field))

    return column


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "kind", "user", "balance_usd", "updated_at")
    balance_usd = usd("balance", "balance (USD)")
    list_filter = ("kind",)
    search_fields = ("code", "user__email", "user__public_id", "reference")
    list_select_related = ("user",)


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    can_delete = False
    readonly_fields = ("account", "amount", "created_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "idempotency_key", "description")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "correlation_id", "description")
    date_hierarchy = "created_at"
    inlines = [PostingInline]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("reference", "user", "amount_usd", "remaining_usd", "status", "owner", "created_at")
    amount_usd = usd("amount", "amount (USD)")
    remaining_usd = usd("remaining", "remaining (USD)")
    list_filter = ("status", "owner")
    search_fields = ("reference", "user__email", "user__public_id")
    list_select_related = ("user",)


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    # The encrypted secret is never displayed, not even encrypted.
    fields = (
        "public_id",
        "user",
        "public_key",
        "status",
        "key_version",
        "activation_tx_hash",
        "activation_error",
        "created_at",
        "activated_at",
    )
    list_display = ("public_key", "user", "status", "key_version", "created_at")
    list_filter = ("status", "key_version")
    search_fields = ("public_key", "public_id", "user__email", "user__public_id")
    list_select_related = ("user",)


@admin.register(PlatformAccount)
class PlatformAccountAdmin(ReadOnlyAdmin):
    fields = ("public_key", "key_version", "created_at")
    list_display = ("public_key", "key_version", "created_at")


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    exclude = ("envelope_xdr",)
    list_display = ("public_id", "user", "purpose", "amount_usd", "status", "destination_ref", "created_at")
    amount_usd = usd("amount", "amount (USD)")
    list_filter = ("status", "purpose", "destination_type")
    search_fields = ("public_id", "transaction_hash", "destination_ref", "user__email", "user__public_id")
    list_select_related = ("user",)


@admin.register(ReconciliationReport)
class ReconciliationReportAdmin(admin.ModelAdmin):
    """Drift between chain and ledger. Support investigates, corrects with an audited
    adjustment if needed, and records what it found in the note."""

    class Media:
        css = {"all": ["css/admin.css"]}  # colours as classes: the CSP refuses style attributes

    list_display = (
        "wallet",
        "difference_display",
        "chain_balance",
        "ledger_balance",
        "status",
        "detected_at",
        "last_seen_at",
    )
    list_filter = ("status",)
    readonly_fields = (
        "wallet",
        "chain_balance",
        "ledger_balance",
        "difference",
        "detected_at",
        "last_seen_at",
        "resolved_at",
    )
    fields = (*readonly_fields, "status", "note")
    list_select_related = ("wallet",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="chain minus ledger (USD)", ordering="difference")
    def difference_display(self, obj):
        css_class = "offerhub-alert" if obj.difference else ""
        sign = "+" if obj.difference > 0 else "-" if obj.difference < 0 else ""
        return format_html('<span class="{}">{}{}</span>', css_class, sign, chain_amount(abs(obj.difference)))


@admin.register(ChainCursor)
class ChainCursorAdmin(ReadOnlyAdmin):
    list_display = ("name", "paging_token", "updated_at")
