import json
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils.functional import cached_property
from django.utils.html import format_html

from offerhub.errors import ServiceError
from offerhub.events import event_dead_letter_retry_request
from offerhub.models import (
    ApiKey,
    AuditLog,
    EmailNotification,
    Event,
    EventDeadLetter,
    IdempotencyRecord,
    JobLease,
    SubscriberCursor,
    WebhookDelivery,
)
from offerhub.money import STROOPS_PER_UNIT, money_from_stroops
from offerhub.services import api_key_create, api_key_revoke
from offerhub.webhooks import webhook_delivery_reprocess

SCOPE_CHOICES = [("read", "read"), ("write", "write"), ("support", "support"), ("*", "* (every scope)")]


STROOPS_PER_CENT = STROOPS_PER_UNIT // 100


def dollars(stroops: int | None) -> str:
    """An amount as support reads it: "$12.50", "-$3.00". A fraction of a cent (a drift can be
    one stroop) is written out in full rather than rounded away: "$0.0000001"."""
    if stroops is None:
        return "-"
    sign = "-" if stroops < 0 else ""
    magnitude = abs(stroops)
    if magnitude % STROOPS_PER_CENT:
        return f"{sign}${(Decimal(magnitude) / STROOPS_PER_UNIT):.7f}".rstrip("0")
    return f"{sign}${money_from_stroops(magnitude)}"


def usd(field: str, label: str):
    """A list column or read-only field showing a stroops field in dollars."""

    @admin.display(description=label, ordering=field)
    def column(self, obj):
        return dollars(getattr(obj, field))

    return column


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system: support can look, never edit."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EstimatedCountPaginator(Paginator):
    """An unfiltered list of a large append-only table (audit, events, journal) counts its pages
    from PostgreSQL's statistics instead of a COUNT(*) over every row; a filtered one, or a
    table under ESTIMATE_FROM rows, is counted exactly."""

    ESTIMATE_FROM = 10_000

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [self.object_list.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] >= self.ESTIMATE_FROM:
                return int(row[0])
        return super().count


class LargeTableAdmin(ReadOnlyAdmin):
    """No second COUNT(*) for "n of N selected" (show_full_result_count) and estimated pages."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False


ACTOR_KINDS = {"SUPPORT": "staff", "USER": "member", "API_KEY": "API key", "SYSTEM": "system", "WEBHOOK": "webhook"}


@admin.register(AuditLog)
class AuditLogAdmin(LargeTableAdmin):
    list_display = ("occurred_at", "action", "resource_type", "resource_id", "actor", "result")
    list_filter = ("result", "actor_type", "resource_type")
    search_fields = ("public_id", "action", "resource_id", "actor_id", "correlation_id", "user_id")
    date_hierarchy = "occurred_at"
    fields = (
        "public_id",
        "occurred_at",
        "action",
        "result",
        "resource_type",
        "resource_id",
        "actor",
        "actor_type",
        "actor_id",
        "user_id",
        "marketplace_id",
        "correlation_id",
        "idempotency_key",
        "payload_before",
        "payload_after",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        """Each row's actor by name, resolved in the page's own query (subqueries), not one query per row."""
        users = get_user_model().objects.filter(public_id=OuterRef("actor_id"))
        keys = ApiKey.objects.filter(id=OuterRef("actor_id"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                actor_user_name=Subquery(users.values("display_name")[:1]),
                actor_user_email=Subquery(users.values("email")[:1]),
                actor_key_name=Subquery(keys.values("name")[:1]),
            )
        )

    @admin.display(description="actor", ordering="actor_id")
    def actor(self, obj):
        """ "Sofia Support (staff)", "Shop backend (API key)", "reconciler (system)"."""
        kind = ACTOR_KINDS.get(obj.actor_type, obj.actor_type.lower())
        if obj.actor_type in ("SUPPORT", "USER"):
            name = getattr(obj, "actor_user_name", None) or getattr(obj, "actor_user_email", None)
        elif obj.actor_type == "API_KEY":
            name = getattr(obj, "actor_key_name", None)
        else:
            name = None
        return f"{name or obj.actor_id} ({kind})"


@admin.register(Event)
class EventAdmin(LargeTableAdmin):
    list_display = ("id", "position", "event_id", "type", "aggregate_type", "aggregate_id", "occurred_at")
    list_filter = ("type", "aggregate_type")
    search_fields = ("event_id", "aggregate_id", "correlation_id", "user_id")


@admin.register(SubscriberCursor)
class SubscriberCursorAdmin(ReadOnlyAdmin):
    """How far each event subscriber got, and why it is backing off."""

    list_display = ("name", "position", "failures", "next_attempt_at", "last_error", "updated_at")
    search_fields = ("name",)


@admin.register(JobLease)
class JobLeaseAdmin(ReadOnlyAdmin):
    """Which worker runs each single-flight periodic job, and until when its lease holds."""

    list_display = ("name", "holder", "claimed_at", "renewed_at", "expires_at", "released_at", "claims")
    search_fields = ("name", "holder")


@admin.register(EventDeadLetter)
class EventDeadLetterAdmin(ReadOnlyAdmin):
    """Events a subscriber failed on too often, parked so it went on with the next ones."""

    list_display = ("created_at", "subscriber", "event", "failures", "last_error", "retried_at", "resolved_at")
    list_filter = ("subscriber", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("subscriber", "event__event_id", "event__type")
    list_select_related = ("event",)
    actions = ["retry_dead_letters"]

    def has_retry_permission(self, request) -> bool:
        return request.user.is_active and request.user.has_perm("offerhub.change_eventdeadletter")

    @admin.action(description="Retry (hand the event to its subscriber again)", permissions=["retry"])
    def retry_dead_letters(self, request, queryset):
        count = 0
        for letter in queryset.filter(resolved_at__isnull=True).select_related("event"):
            event_dead_letter_retry_request(dead_letter=letter, actor_id=request.user.public_id)
            count += 1
        messages.success(request, f"Queued {count} event(s) for their subscriber; see “resolved” once taken.")


@admin.register(EmailNotification)
class EmailNotificationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "key", "subject", "sent_at")
    search_fields = ("key", "event_id", "subject")


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

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, actor_type=AuditLog.ActorType.SUPPORT, actor_id=request.user.public_id)
            count += 1
        messages.success(request, f"Revoked {count} API key(s).")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """What the providers sent us (API.md §13). Read-only; "Process again" goes through the service."""

    list_display = ("received_at", "provider", "event_type", "event_id", "status", "duplicates", "attempts", "note")
    list_filter = ("provider", "status", "authenticated")
    search_fields = ("event_id", "event_type")
    date_hierarchy = "received_at"
    actions = ["process_again"]
    fields = (
        "provider",
        "event_type",
        "event_id",
        "status",
        "authenticated",
        "note",
        "duplicates",
        "attempts",
        "last_error",
        "received_at",
        "processed_at",
        "headers",
        "body_pretty",
    )
    readonly_fields = fields

    def has_reprocess_permission(self, request) -> bool:
        # The pages stay read-only (ReadOnlyAdmin refuses every change); change_webhookdelivery
        # (the Support lead has it) unlocks only this action.
        return request.user.is_active and request.user.has_perm("offerhub.change_webhookdelivery")

    @admin.display(description="body")
    def body_pretty(self, obj):
        """The body as text (JSON indented when it parses); escaped by format_html, never rendered."""
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False, sort_keys=True)
        except ValueError:
            text = obj.body
        return format_html("<pre>{}</pre>", text)

    @admin.action(description="Process again", permissions=["reprocess"])
    def process_again(self, request, queryset):
        queued, refused = 0, []
        for delivery in queryset:
            try:
                webhook_delivery_reprocess(delivery=delivery, actor_id=request.user.public_id)
                queued += 1
            except ServiceError as error:
                refused.append(f"{delivery}: {error.message}")
        if queued:
            messages.success(request, f"Queued {queued} delivery(ies) for processing.")
        for problem in refused:
            messages.error(request, problem)
