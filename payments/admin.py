from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from backoffice.admin import DriftReportAdmin
from offerhub.admin import LargeTableAdmin, ReadOnlyAdmin, dollars, usd
from offerhub.errors import ServiceError
from payments.models import (
    AirtmDiscrepancy,
    ChainCursor,
    Hold,
    JournalEntry,
    LedgerAccount,
    PlatformAccount,
    PlatformSigner,
    Posting,
    ReconciliationReport,
    Topup,
    Wallet,
    Withdrawal,
)


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "kind", "user", "balance_usd", "updated_at")
    fields = ("code", "kind", "user", "reference", "balance_usd", "updated_at")
    readonly_fields = fields
    balance_usd = usd("balance", "balance")
    list_filter = ("kind",)
    search_fields = ("code", "user__email", "user__public_id", "reference")
    list_select_related = ("user",)


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    can_delete = False
    fields = ("account_code", "amount_usd", "created_at")
    readonly_fields = fields
    amount_usd = usd("amount", "amount (+ credits the account)")

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="account")
    def account_code(self, obj):
        return obj.account.code

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account")


@admin.register(JournalEntry)
class JournalEntryAdmin(LargeTableAdmin):
    list_display = ("created_at", "kind", "idempotency_key", "description")
    list_filter = ("kind",)
    search_fields = ("idempotency_key", "correlation_id", "description")
    date_hierarchy = "created_at"
    inlines = [PostingInline]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("reference", "user", "amount_usd", "remaining_usd", "status", "owner", "created_at")
    exclude = ("amount", "remaining")
    readonly_fields = ("amount_usd", "remaining_usd")
    amount_usd = usd("amount", "amount")
    remaining_usd = usd("remaining", "remaining")
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


@admin.register(PlatformSigner)
class PlatformSignerAdmin(ReadOnlyAdmin):
    fields = ("public_key", "key_version", "created_at", "funded_at")
    list_display = ("public_key", "key_version", "created_at", "funded_at")


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    exclude = ("envelope_xdr", "amount", "fee")
    readonly_fields = ("amount_usd", "fee_usd")
    list_display = ("public_id", "user", "purpose", "amount_usd", "status", "destination_ref", "created_at")
    amount_usd = usd("amount", "amount")
    fee_usd = usd("fee", "fee")
    list_filter = ("status", "purpose", "destination_type")
    search_fields = ("public_id", "transaction_hash", "destination_ref", "user__email", "user__public_id")
    list_select_related = ("user",)


@admin.register(ReconciliationReport)
class ReconciliationReportAdmin(DriftReportAdmin):
    """A wallet whose USDC on chain differs from the ledger. Support investigates, corrects with an
    audited adjustment if needed, and records what it found in the note."""

    run_target = "wallets"
    shows_airtm_discrepancies = True  # the reconciliation page: Airtm's side next to the wallets' drift
    list_display = (
        "wallet_owner",
        "difference_display",
        "chain_usd",
        "ledger_usd",
        "status",
        "detected_at",
        "last_seen_at",
    )
    fields = (  # what differs, in words, heads the page (the change form template)
        "wallet_owner",
        "wallet_key",
        "chain_usd",
        "ledger_usd",
        "difference_display",
        "status",
        "note",
        "detected_at",
        "last_seen_at",
        "resolved_at",
    )
    readonly_fields = fields
    list_select_related = ("wallet__user",)
    search_fields = ("wallet__public_key", "wallet__user__email", "wallet__user__public_id")
    chain_usd = usd("chain_balance", "on chain")
    ledger_usd = usd("ledger_balance", "in the ledger")

    @admin.display(description="wallet of", ordering="wallet__user__email")
    def wallet_owner(self, obj):
        user = obj.wallet.user
        return f"{user.display_name} ({user.email or user.public_id})"

    @admin.display(description="wallet address")
    def wallet_key(self, obj):
        url = reverse("admin:payments_wallet_change", args=[obj.wallet_id])
        return format_html('<a href="{}">{}</a>', url, obj.wallet.public_key)

    @admin.display(description="chain minus ledger", ordering="difference")
    def difference_display(self, obj):
        css_class = "offerhub-alert" if obj.difference else ""
        sign = "+" if obj.difference > 0 else ""
        return format_html('<span class="{}">{}{}</span>', css_class, sign, dollars(obj.difference))

    def discrepancies(self, obj) -> list[str]:
        user = obj.wallet.user
        who = f"The wallet {obj.wallet.public_key[:8]}\u2026 of {user.display_name} ({user.email or user.public_id})"
        chain, ledger = dollars(obj.chain_balance), dollars(obj.ledger_balance)
        gap = dollars(abs(obj.difference))
        if obj.difference > 0:
            verdict = f"the chain has {gap} more than the ledger records"
        elif obj.difference < 0:
            verdict = f"the ledger records {gap} more than the chain holds"
        else:
            verdict = "they agree"
        return [f"{who} holds {chain} of USDC on chain; our ledger says {ledger} (available plus on hold): {verdict}."]


@admin.register(ChainCursor)
class ChainCursorAdmin(ReadOnlyAdmin):
    list_display = ("name", "paging_token", "updated_at")


@admin.register(AirtmDiscrepancy)
class AirtmDiscrepancyAdmin(DriftReportAdmin):
    """A top-up or Airtm withdrawal on which Airtm and our record disagree (payments.airtm_reconciliation).
    Read-only; support investigates, corrects through the audited services and resolves it with a note."""

    run_target = "airtm"
    list_display = ("our_reference", "kind", "problem", "our_status", "airtm_status", "status", "last_seen_at")
    fields = (
        "kind",
        "our_reference",
        "airtm_id",
        "our_status",
        "airtm_status",
        "our_amount_usd",
        "airtm_amount_usd",
        "problem",
        "status",
        "note",
        "detected_at",
        "last_seen_at",
        "resolved_at",
    )
    readonly_fields = fields
    list_filter = ("status", "kind")
    search_fields = ("our_reference", "airtm_id")
    our_amount_usd = usd("our_amount", "our amount")
    airtm_amount_usd = usd("airtm_amount", "Airtm's amount")

    def discrepancies(self, obj) -> list[str]:
        what = "top-up" if obj.kind == AirtmDiscrepancy.Kind.PAYIN else "withdrawal"
        at_airtm = f"Airtm {obj.kind} {obj.airtm_id}" if obj.airtm_id else "no Airtm id"
        return [f"The {what} {obj.our_reference} ({at_airtm}): {obj.problem}"]


@admin.register(Topup)
class TopupAdmin(ReadOnlyAdmin):
    exclude = ("amount",)
    # Every field read-only: no form field is built (the URL ones would warn about their scheme).
    readonly_fields = ("amount_usd", *(f.name for f in Topup._meta.fields if f.name not in ("id", "amount")))
    list_display = ("public_id", "user", "amount_usd", "status", "airtm_payin_id", "created_at")
    amount_usd = usd("amount", "amount")
    list_filter = ("status",)
    search_fields = ("public_id", "airtm_payin_id", "user__email", "user__public_id")
    list_select_related = ("user",)
    actions = ["refresh_from_airtm"]

    @admin.action(description="Refresh from Airtm")
    def refresh_from_airtm(self, request, queryset):
        from payments.topups import topup_refresh

        for topup in queryset:
            try:
                topup = topup_refresh(topup=topup)
            except ServiceError as error:
                self.message_user(request, f"{topup.public_id}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, f"{topup.public_id}: {topup.status}")
