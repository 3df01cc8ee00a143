from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from offerhub.models import ApiKey, AuditLog, Event, IdempotencyRecord
from offerhub.services import api_key_create, api_key_revoke

SCOPE_CHOICES = [("read", "read"), ("write", "write"), ("support", "support"), ("*", "* (every scope)")]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system: support can look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "action", "resource_type", "resource_id", "actor_type", "actor_id", "result")
    list_filter = ("result", "actor_type", "resource_type")
    search_fields = ("public_id", "action", "resource_id", "actor_id", "correlation_id", "user_id")
    date_hierarchy = "occurred_at"
    list_select_related = True


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_id", "type", "aggregate_type", "aggregate_id", "occurred_at", "dispatched_at")
    list_filter = ("type", "aggregate_type")
    search_fields = ("event_id", "aggregate_id", "correlation_id", "user_id")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ("principal_id", "key", "method", "path", "status", "response_status", "created_at", "expires_at")
    list_filter = ("status", "method")
    search_fields = ("principal_id", "key", "path")


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=SCOPE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "marketplace_id")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["css/admin.css"]}  # colours as classes: the CSP refuses style attributes

    list_display = ("name", "id", "scope_list", "marketplace_id", "created_at", "last_used_at", "status")
    search_fields = ("id", "name", "marketplace_id")
    actions = ["revoke_selected"]
    readonly_fields = (
        "id",
        "name",
        "environment",
        "scopes",
        "marketplace_id",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def get_fields(self, request, obj=None):
        return ("name", "scopes", "marketplace_id") if obj is None else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False  # keys are revoked, never deleted: the audit trail refers to them

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="status")
    def status(self, obj):
        return format_html('<span class="offerhub-alert">revoked</span>') if obj.revoked_at else "active"

    def save_model(self, request, obj, form, change):
        if change:
            return
        created, secret = api_key_create(
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            marketplace_id=form.cleaned_data.get("marketplace_id") or "",
            actor_type=AuditLog.ActorType.SUPPORT,
            actor_id=request.user.public_id,
        )
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False
        messages.warning(request, format_html("New API key (shown once, copy it now): <code>{}</code>", secret))

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, actor_type=AuditLog.ActorType.SUPPORT, actor_id=request.user.public_id)
            count += 1
        messages.success(request, f"Revoked {count} API key(s).")
