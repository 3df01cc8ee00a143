"""Backoffice for outgoing webhooks: endpoints (create, disable, enable) and their deliveries
(request and response, re-send). Every change goes through hooks.services, audited."""

import json

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html

from hooks.models import OutgoingDelivery, WebhookEndpoint
from hooks.services import (
    deliveries_resend_failed,
    delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_set_enabled,
)
from hooks.transport import destination_check
from offerhub.admin import ReadOnlyAdmin
from offerhub.errors import ServiceError
from offerhub.models import AuditLog


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2048, assume_scheme="https")
    events_text = forms.CharField(
        label="Events",
        initial="*",
        max_length=2000,
        help_text="Comma-separated event types or wildcards: order.*, dispute.opened, or * for every event.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "marketplace_id")

    def clean_url(self):
        try:
            destination_check(self.cleaned_data["url"], must_resolve=False)
        except ServiceError as error:
            raise forms.ValidationError(f"URL {error.message}") from None
        return self.cleaned_data["url"]

    def clean_events_text(self):
        events = [part.strip() for part in self.cleaned_data["events_text"].split(",") if part.strip()]
        if not events or len(events) > 50:
            raise forms.ValidationError("Give between 1 and 50 event types or wildcards.")
        return events


class DeliveryInline(admin.TabularInline):
    model = OutgoingDelivery
    fields = ("public_id", "event_type", "status", "attempts", "response_status", "next_attempt_at", "created_at")
    readonly_fields = fields
    ordering = ("-created_at",)
    show_change_link = True
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("id", "url", "marketplace_id", "enabled", "disabled_reason", "failing_since", "created_at")
    list_filter = ("enabled",)
    search_fields = ("id", "url", "marketplace_id", "description")
    actions = ["disable_selected", "enable_selected", "resend_failed"]
    readonly_fields = (
        "id",
        "url",
        "description",
        "events",
        "marketplace_id",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "failing_since",
        "created_by",
        "created_at",
        "deleted_at",
        "deliveries_link",
    )

    def has_delete_permission(self, request, obj=None):
        return False  # deleting goes through the API (soft) so the delivery log stays

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)  # actions only; no edits

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = WebhookEndpointForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("url", "events_text", "description", "marketplace_id")
        return self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        created = webhook_endpoint_create(
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events_text"],
            description=form.cleaned_data.get("description", ""),
            marketplace_id=form.cleaned_data.get("marketplace_id", ""),
            actor_type=AuditLog.ActorType.SUPPORT,
            actor_id=request.user.public_id,
        )
        obj.pk = created.pk
        obj.secret = created.secret

    def response_add(self, request, obj, post_url_continue=None):
        """The signing secret, shown on this page only (never stored in a message or cookie)."""
        context = {**self.admin_site.each_context(request), "endpoint": obj, "opts": self.opts, "title": "Secret"}
        return TemplateResponse(request, "admin/hooks/webhookendpoint_secret.html", context)

    @admin.display(description="deliveries")
    def deliveries_link(self, obj):
        return format_html(
            '<a href="../../../outgoingdelivery/?endpoint__id__exact={}">{} deliveries ({} failed)</a>',
            obj.id,
            obj.deliveries.count(),
            obj.deliveries.filter(status=OutgoingDelivery.Status.FAILED).count(),
        )

    def _each(self, request, queryset, apply, done: str):
        count, refused = 0, []
        for endpoint in queryset:
            try:
                count += apply(endpoint) or 0
            except ServiceError as error:
                refused.append(f"{endpoint.id}: {error.message}")
        messages.success(request, done.format(count=count))
        for problem in refused:
            messages.error(request, problem)

    @admin.action(description="Disable selected endpoints", permissions=["change"])
    def disable_selected(self, request, queryset):
        def disable(endpoint):
            webhook_endpoint_set_enabled(
                endpoint=endpoint,
                enabled=False,
                reason=f"disabled by support ({request.user.public_id})",
                actor_type=AuditLog.ActorType.SUPPORT,
                actor_id=request.user.public_id,
            )
            return 1

        self._each(request, queryset, disable, "Disabled {count} endpoint(s).")

    @admin.action(description="Enable selected endpoints", permissions=["change"])
    def enable_selected(self, request, queryset):
        def enable(endpoint):
            webhook_endpoint_set_enabled(
                endpoint=endpoint, enabled=True, actor_type=AuditLog.ActorType.SUPPORT, actor_id=request.user.public_id
            )
            return 1

        self._each(request, queryset, enable, "Enabled {count} endpoint(s).")

    @admin.action(description="Re-send every failed delivery", permissions=["change"])
    def resend_failed(self, request, queryset):
        self._each(
            request,
            queryset,
            lambda endpoint: deliveries_resend_failed(endpoint=endpoint, actor_id=request.user.public_id),
            "Queued {count} failed delivery(ies) again.",
        )


@admin.register(OutgoingDelivery)
class OutgoingDeliveryAdmin(ReadOnlyAdmin):
    """What we sent to the marketplace's endpoints and what they answered (the last attempt)."""

    list_display = ("created_at", "endpoint", "event_type", "event_id", "status", "attempts", "response_status")
    list_filter = ("status",)
    list_select_related = ("endpoint",)
    search_fields = ("public_id", "event_id", "event_type", "endpoint__id", "endpoint__url")
    date_hierarchy = "created_at"
    actions = ["resend"]
    fields = (
        "public_id",
        "endpoint",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "next_attempt_at",
        "retry_until",
        "last_attempt_at",
        "duration_ms",
        "error",
        "request_headers_pretty",
        "body_pretty",
        "response_status",
        "response_body_pretty",
        "created_at",
    )
    readonly_fields = fields

    def has_resend_permission(self, request) -> bool:
        # Read-only pages; change_outgoingdelivery (the Support lead has it) unlocks only this action.
        return request.user.is_active and request.user.has_perm("hooks.change_outgoingdelivery")

    @admin.display(description="request headers")
    def request_headers_pretty(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.request_headers, indent=2, sort_keys=True))

    @admin.display(description="request body")
    def body_pretty(self, obj):
        try:
            text = json.dumps(json.loads(obj.body), indent=2, ensure_ascii=False, sort_keys=True)
        except ValueError:
            text = obj.body
        return format_html("<pre>{}</pre>", text)

    @admin.display(description="response body (excerpt)")
    def response_body_pretty(self, obj):
        return format_html("<pre>{}</pre>", obj.response_body)

    @admin.action(description="Re-send", permissions=["resend"])
    def resend(self, request, queryset):
        queued, refused = 0, []
        for delivery in queryset:
            try:
                delivery_resend(delivery=delivery, actor_id=request.user.public_id)
                queued += 1
            except ServiceError as error:
                refused.append(f"{delivery.public_id}: {error.message}")
        if queued:
            messages.success(request, f"Queued {queued} delivery(ies) again.")
        for problem in refused:
            messages.error(request, problem)
