from django.contrib import admin

from sandbox.models import SandboxAccount, SandboxFault, SandboxPayment, SandboxTransaction, SandboxTrustline


@admin.register(SandboxFault)
class SandboxFaultAdmin(admin.ModelAdmin):
    list_display = ("__str__", "service", "method", "path_contains", "status_code", "timeout", "remaining", "enabled")
    list_editable = ("enabled",)
    list_filter = ("service", "enabled")


class TrustlineInline(admin.TabularInline):
    model = SandboxTrustline
    extra = 0
    readonly_fields = ("asset_code", "asset_issuer", "balance", "limit", "sponsor")
    can_delete = False


@admin.register(SandboxAccount)
class SandboxAccountAdmin(admin.ModelAdmin):
    list_display = ("account_id", "xlm_balance", "sequence", "num_subentries", "num_sponsoring", "sponsor")
    search_fields = ("account_id",)
    inlines = [TrustlineInline]


@admin.register(SandboxTransaction)
class SandboxTransactionAdmin(admin.ModelAdmin):
    list_display = ("hash", "ledger", "source_account", "successful", "fee_charged", "created_at")
    list_filter = ("successful",)
    search_fields = ("hash", "source_account")


@admin.register(SandboxPayment)
class SandboxPaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "from_account", "to_account", "asset_code", "amount", "created_at")
    search_fields = ("from_account", "to_account", "transaction__hash")
