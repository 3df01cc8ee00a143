"""The dispute queue and the case page of the backoffice. Support acts only through the
dispute services (assign, resolve), which audit and publish; no field is edited here."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from disputes.api import DISPUTE_PAYOUT
from disputes.models import Dispute
from disputes.services import dispute_assign, dispute_resolve
from marketplace.models import Order
from marketplace.orders import OrderActor, order_escrow_unpaid
from marketplace.orders_api import provider_step_await, provider_steps_mark
from offerhub.admin import ReadOnlyAdmin
from offerhub.errors import ServiceError
from offerhub.forms import MoneyFormField
from offerhub.money import money_from_stroops, money_to_stroops

# The service names the API's fields; the form shows the refusal by its own field.
FORM_FIELD_OF = {"releaseAmount": "release_amount", "refundAmount": "refund_amount", "decision": "decision"}


def agent_name(user) -> str:
    """Who reviews a case, as the queue shows it and "assigned to me" finds it."""
    return user.email


class AssigneeFilter(admin.SimpleListFilter):
    title = "assignee"
    parameter_name = "assignee"

    def lookups(self, request, model_admin):
        return [("me", "assigned to me"), ("none", "unassigned")]

    def queryset(self, request, queryset):
        if self.value() == "me":
            return queryset.filter(assigned_to=agent_name(request.user))
        if self.value() == "none":
            return queryset.filter(assigned_to="")
        return queryset


class DisputeResolveForm(forms.Form):
    decision = forms.ChoiceField(choices=Dispute.Decision.choices)
    release_amount = MoneyFormField(required=False, label="To the seller (USD, SPLIT only)")
    refund_amount = MoneyFormField(required=False, label="To the buyer (USD, SPLIT only)")
    note = forms.CharField(label="Decision note", widget=forms.Textarea(attrs={"rows": 4}))
    confirm = forms.BooleanField(required=True)

    def __init__(self, *args, held: int, **kwargs):
        super().__init__(*args, **kwargs)
        total = money_from_stroops(held)
        self.fields["confirm"].label = (
            f"I confirm the payout, before fees, of the ${total} the escrow holds: FULL_RELEASE pays the seller "
            f"${total} and the buyer $0.00; FULL_REFUND pays the buyer ${total} and the seller $0.00; SPLIT pays "
            "the seller and the buyer the amounts above."
        )

    def stroops(self, name: str) -> int | None:
        amount = self.cleaned_data.get(name)
        return None if amount is None else money_to_stroops(amount)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = ("public_id", "order_link", "amount_usd", "buyer", "seller", "reason", "age", "assignee", "status")
    list_filter = ("status", AssigneeFilter, "reason")
    search_fields = ("public_id", "order__public_id", "order__buyer__email", "order__seller__email")
    list_select_related = ("order__buyer", "order__seller")
    ordering = ("created_at", "pk")  # oldest first: the longest waiting case is handled first
    list_per_page = 50
    actions = ["assign_to_me"]
    change_form_template = "admin/disputes/dispute/change_form.html"

    def has_resolve_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm("disputes.change_dispute")

    @admin.display(description="order", ordering="order__public_id")
    def order_link(self, obj):
        url = reverse("admin:marketplace_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.public_id)

    @admin.display(description="amount (USD)", ordering="order__amount")
    def amount_usd(self, obj):
        return money_from_stroops(obj.order.amount)

    @admin.display(description="buyer", ordering="order__buyer__email")
    def buyer(self, obj):
        return obj.order.buyer.email

    @admin.display(description="seller", ordering="order__seller__email")
    def seller(self, obj):
        return obj.order.seller.email

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        return timesince(obj.created_at, depth=1)

    @admin.display(description="assignee", ordering="assigned_to")
    def assignee(self, obj):
        return obj.assigned_to or "-"

    @admin.action(description="Assign to me (open disputes)", permissions=["resolve"])
    def assign_to_me(self, request, queryset):
        actor = OrderActor.for_user(request.user)
        assigned, skipped = 0, []
        for dispute in queryset.order_by("pk"):
            if dispute.status != Dispute.Status.OPEN:
                skipped.append(f"{dispute.public_id} ({dispute.status})")
                continue
            try:
                dispute_assign(dispute=dispute, agent=agent_name(request.user), actor=actor)
            except ServiceError as refused:  # taken by someone else meanwhile
                skipped.append(f"{dispute.public_id} ({refused.message})")
                continue
            assigned += 1
        if assigned:
            self.message_user(request, f"Assigned {assigned} dispute(s) to you.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, "Skipped, only an OPEN dispute can be assigned: " + ", ".join(skipped), messages.WARNING
            )

    def get_urls(self):
        resolve = self.admin_site.admin_view(self.resolve_view)
        return [path("<int:object_id>/resolve/", resolve, name="disputes_dispute_resolve"), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_resolve": self.has_resolve_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def resolve_view(self, request, object_id):
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        dispute = get_object_or_404(Dispute.objects.select_related("order__buyer", "order__seller"), pk=object_id)
        change_url = reverse("admin:disputes_dispute_change", args=[dispute.pk])
        if dispute.status != Dispute.Status.UNDER_REVIEW:
            self.message_user(request, f"Only a dispute under review can be resolved; this one is {dispute.status}.")
            return redirect(change_url)
        held = order_escrow_unpaid(dispute.order)
        form = DisputeResolveForm(request.POST or None, held=held)
        if request.method == "POST" and form.is_valid():
            after = provider_steps_mark()
            try:
                dispute = dispute_resolve(
                    dispute=dispute,
                    decision=form.cleaned_data["decision"],
                    release_amount=form.stroops("release_amount"),
                    refund_amount=form.stroops("refund_amount"),
                    note=form.cleaned_data["note"],
                    actor=OrderActor.for_user(request.user),
                )
            except ServiceError as refused:
                form.add_error(FORM_FIELD_OF.get(refused.field), refused.message)
            else:
                self._payout_report(request, dispute, after=after)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resolve {dispute.public_id}",
            "opts": self.model._meta,
            "original": dispute,
            "dispute": dispute,
            "form": form,
            "held_usd": money_from_stroops(held),
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/disputes/dispute/resolve.html", context)

    def _payout_report(self, request, dispute, *, after: int) -> None:
        """The decision is recorded; say whether the chain has paid it yet."""
        try:
            _, finished = provider_step_await(Order.objects.get(pk=dispute.order_id), DISPUTE_PAYOUT, after=after)
        except ServiceError as refused:
            self.message_user(
                request,
                f"The chain refused the payout ({refused.message}); the dispute is back under review.",
                messages.ERROR,
            )
            return
        if finished:
            self.message_user(request, "Resolved: the payout is confirmed on chain and the order closed.")
        else:
            on_its_way = "Resolved: the payout is on its way on chain; the order closes when it confirms."
            self.message_user(request, on_its_way, messages.INFO)
