from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from backoffice.services import drift_report_acknowledge, drift_report_resolve, reconciliation_run
from offerhub.admin import ReadOnlyAdmin, dollars, usd
from offerhub.errors import ServiceError
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

__all__ = ["DriftReportAdmin", "usd"]  # escrow.admin builds on these


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
class JournalEntryAdmin(ReadOnlyAdmin):
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


class DriftNoteForm(forms.Form):
    note = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="What you found and what you did (an adjustment, a contract fixed...). Required.",
    )
    decision = forms.ChoiceField(choices=[("acknowledge", "Acknowledge"), ("resolve", "Resolve")])


class DriftReportAdmin(admin.ModelAdmin):
    """A drift report (wallet or escrow): read-only fields, the discrepancy in plain words, and
    support's actions through the reconciliation services: "Run now" on the list, acknowledge or
    resolve with a note on the report. Nothing is edited in place."""

    class Media:
        css = {"all": ["css/admin.css"]}  # colours as classes: the CSP refuses style attributes

    run_target = ""  # "wallets" or "escrows": what "Run now" compares
    change_form_template = "admin/payments/drift_report/change_form.html"
    change_list_template = "admin/payments/drift_report/change_list.html"
    list_filter = ("status",)
    ordering = ("-detected_at", "-pk")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_act_permission(self, request) -> bool:
        """Run, acknowledge and resolve: the change permission (Support lead)."""
        return self.has_change_permission(request)

    def discrepancies(self, obj) -> list[str]:
        raise NotImplementedError

    @admin.display(description="discrepancy")
    def discrepancy(self, obj):
        return " ".join(self.discrepancies(obj))

    def get_urls(self):
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}"
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name=f"{name}_run"),
            path("<int:object_id>/note/", self.admin_site.admin_view(self.note_view), name=f"{name}_note"),
            *super().get_urls(),
        ]

    def _url(self, action: str, *args) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{action}", args=args)

    def changelist_view(self, request, extra_context=None):
        run = {"can_run": self.has_act_permission(request), "run_url": self._url("run"), "run_target": self.run_target}
        extra_context = {**(extra_context or {}), **run}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "POST":
            raise PermissionDenied  # every field is read-only; acknowledge and resolve post to note/
        obj = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            **self._note_context(request, obj, DriftNoteForm()),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _note_context(self, request, obj, form) -> dict:
        open_report = obj is not None and obj.status == "OPEN"
        return {
            "discrepancies": self.discrepancies(obj) if obj is not None else [],
            "note_form": form if open_report and self.has_act_permission(request) else None,
            "note_url": self._url("note", obj.pk) if obj is not None else "",
        }

    @method_decorator(require_POST)
    def run_view(self, request):
        if not self.has_act_permission(request):
            raise PermissionDenied
        try:
            outcome = reconciliation_run(target=self.run_target, staff=request.user)
        except ServiceError as failure:
            self.message_user(request, f"Not run to the end: {failure.message}", messages.ERROR)
        else:
            level = messages.WARNING if outcome.drifting else messages.SUCCESS
            self.message_user(request, f"Ran the {self.run_target} comparison now: {outcome}.", level)
        return redirect(self._url("changelist"))

    def note_view(self, request, object_id):
        if not self.has_act_permission(request):
            raise PermissionDenied
        report = get_object_or_404(self.get_queryset(request), pk=object_id)
        change_url = self._url("change", report.pk)
        form = DriftNoteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            act = drift_report_resolve if form.cleaned_data["decision"] == "resolve" else drift_report_acknowledge
            try:
                report = act(report=report, note=form.cleaned_data["note"], staff=request.user)
            except ServiceError as refused:
                form.add_error("note" if refused.field == "note" else None, refused.message)
            else:
                done = "Resolved" if report.status == "RESOLVED" else "Acknowledged"
                self.message_user(request, f"{done}, with your note; the audit log records it.", messages.SUCCESS)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            **self._note_context(request, report, form),
            "title": f"Acknowledge or resolve: {report}",
            "opts": self.model._meta,
            "original": report,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/payments/drift_report/note.html", context)


@admin.register(ReconciliationReport)
class ReconciliationReportAdmin(DriftReportAdmin):
    """A wallet whose USDC on chain differs from the ledger. Support investigates, corrects with an
    audited adjustment if needed, and records what it found in the note."""

    run_target = "wallets"
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
