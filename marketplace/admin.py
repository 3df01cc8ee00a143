from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from escrow.models import Escrow, EscrowStep
from marketplace.forms import AdminUserChangeForm, SignUpForm
from marketplace.listings import listing_pause
from marketplace.manual import (
    REASON_MAX_LENGTH,
    ManualAction,
    SettlementPreview,
    order_settle_manually,
    order_settlement_preview,
    settle_manually_allowed,
)
from marketplace.models import (
    Category,
    Listing,
    ListingImage,
    ListingMilestone,
    Order,
    OrderMilestone,
    Review,
    User,
    VisitorSession,
)
from marketplace.orders import order_escrow
from marketplace.orders_api import ProviderStep, provider_step_await, provider_steps_mark
from marketplace.references import order_pk_from_reference, order_reference
from marketplace.reviews import HIDE_REASON_MAX_LENGTH, review_hide
from marketplace.services import user_sessions_end
from offerhub.admin import ReadOnlyAdmin
from offerhub.errors import ServiceError
from offerhub.money import money_format, money_from_stroops


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = AdminUserChangeForm
    add_form = SignUpForm
    ordering = ("-date_joined",)
    list_display = ("email", "display_name", "public_id", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "display_name", "public_id")
    # The Airtm link is shown, never edited here: it changes only through the audited service.
    readonly_fields = (
        "public_id",
        "handle",
        "date_joined",
        "last_login",
        "airtm_user_id",
        "airtm_email",
        "airtm_linked_at",
    )
    fieldsets = (
        (None, {"fields": ("public_id", "handle", "email", "display_name", "password")}),
        ("Seller profile", {"fields": ("about", "avatar")}),
        ("Airtm", {"fields": ("airtm_user_id", "airtm_email", "airtm_linked_at")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("date_joined", "last_login")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "display_name", "password1", "password2")}),)
    actions = ["sessions_end_selected"]

    @admin.action(
        description="Sign the selected members out everywhere (end their sessions)", permissions=["end_sessions"]
    )
    def sessions_end_selected(self, request, queryset):
        ended = sum(user_sessions_end(user=user, actor=request.user) for user in queryset.order_by("pk"))
        self.message_user(request, f"Ended {ended} session(s) of {len(queryset)} member(s).", messages.SUCCESS)

    def has_end_sessions_permission(self, request):
        return request.user.has_perm("marketplace.delete_visitorsession")


@admin.register(VisitorSession)
class VisitorSessionAdmin(admin.ModelAdmin):
    """Who is logged in, until when: a list and nothing else. A session's key is its visitor's
    credential, so no page, link or form carries it: no change page (no URL with a key in it), no
    links, no actions (their checkboxes would hold the keys). A member's sessions end with the
    members' action "Sign out everywhere"; deleting a member deletes theirs."""

    list_display = ("member", "expire_date")
    list_display_links = None
    list_select_related = ("member",)
    search_fields = ("member__email", "member__public_id")
    ordering = ("-expire_date",)
    actions = None

    def get_urls(self):
        # The list, and the add page every admin has (refused: sessions start by logging in).
        return [url for url in super().get_urls() if url.name and url.name.endswith(("_changelist", "_add"))]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "icon", "position", "listing_count")
    fields = ("name", "slug", "icon", "image", "position")
    list_editable = ("position",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(listing_count=Count("listings"))

    @admin.display(description="listings", ordering="listing_count")
    def listing_count(self, obj):
        return obj.listing_count


class ListingImageInline(admin.TabularInline):
    model = ListingImage
    extra = 0
    can_delete = False
    fields = ("preview", "position", "width", "height", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="image")
    def preview(self, obj):
        return format_html('<a href="{0}"><img src="{0}" alt="" height="64"></a>', obj.image.url)


class ListingMilestoneInline(admin.TabularInline):
    model = ListingMilestone
    extra = 0
    can_delete = False
    fields = ("position", "title", "amount_usd")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="amount (USD)")
    def amount_usd(self, obj):
        return money_format(obj.amount)


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    """Sellers write listings; support reads them and can pause one (moderation), which is audited."""

    list_display = ("title", "public_id", "seller", "category", "price_usd", "status", "created_at")
    list_filter = ("status", "category")
    search_fields = ("title", "public_id", "seller__email", "seller__display_name", "seller__public_id")
    list_select_related = ("seller", "category")
    date_hierarchy = "created_at"
    inlines = [ListingMilestoneInline, ListingImageInline]
    actions = ["pause_selected"]
    fields = (
        "public_id",
        "seller",
        "category",
        "title",
        "description",
        "price_usd",
        "delivery_days",
        "delivery_terms",
        "status",
        "created_at",
        "updated_at",
        "deleted_at",
    )
    readonly_fields = ("public_id", "price_usd", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # every change goes through the listing services, which audit it

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="price (USD)", ordering="price_cents")
    def price_usd(self, obj):
        return money_format(obj.price)

    def has_pause_permission(self, request) -> bool:
        """Moderation: staff who may change listings (the model permission), not every reader."""
        return request.user.has_perm("marketplace.change_listing")

    @admin.action(description="Pause the selected listings (hide them from buyers)", permissions=["pause"])
    def pause_selected(self, request, queryset):
        paused = 0
        for listing in queryset.filter(status=Listing.Status.ACTIVE).order_by("pk"):
            listing_pause(listing=listing, actor=request.user)
            paused += 1
        self.message_user(request, f"Paused {paused} listing(s); their sellers can resume them.", messages.SUCCESS)


class OrderMilestoneInline(admin.TabularInline):
    model = OrderMilestone
    extra = 0
    can_delete = False
    fields = ("position", "ref", "title", "amount_usd", "status", "evidence", "completed_at", "released_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order")

    @admin.display(description="amount (USD)")
    def amount_usd(self, obj):
        return money_from_stroops(obj.amount)

    @admin.display(description="evidence")
    def evidence(self, obj):
        """What the seller delivered, as they gave it: text, a link, a file (downloaded through
        the order's access-checked view)."""
        parts = []
        if obj.evidence_text:
            parts.append(format_html("<p>{}</p>", obj.evidence_text))
        if obj.evidence_link:
            parts.append(format_html('<p><a href="{0}" rel="noopener noreferrer">{0}</a></p>', obj.evidence_link))
        if obj.evidence_file:
            url = reverse("order-evidence", args=[obj.order.public_id, obj.ref])
            name = obj.evidence_file.name.rsplit("/", 1)[-1]
            parts.append(format_html('<p><a href="{}">Download the file ({})</a></p>', url, name))
        return format_html_join("", "{}", ((part,) for part in parts)) if parts else "-"

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("marketplace.view_order")  # part of the order: whoever reads it sees them


class ManualSettlementForm(forms.Form):
    reason = forms.CharField(
        label="Reason (kept in the audit log)",
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    confirm = forms.BooleanField(required=True)

    def __init__(self, *args, preview: SettlementPreview, **kwargs):
        super().__init__(*args, **kwargs)
        money = preview.dollars
        self.fields["confirm"].label = (
            f"I confirm: ${money['gross']} leaves the escrow and the {preview.recipient} "
            f"({preview.recipient_user.email}) receives ${money['net']} after the fees."
        )


# The step a manual settlement waits for, as the orders API waits for its own (a release of an
# escrow still flagged as disputed on chain, after a withdrawn dispute, is paid by the resolver).
Action = EscrowStep.Action
RELEASE_STEPS = (Action.APPROVE, Action.RELEASE, Action.RELEASE_MILESTONE, Action.RESOLVE, Action.RESOLVE_MILESTONE)
REFUND_STEPS = (Action.DISPUTE, Action.DISPUTE_MILESTONE, Action.RESOLVE, Action.RESOLVE_MILESTONE)
S = Order.Status


def manual_payout_step(order: Order, action: str, milestone_ref: str | None) -> ProviderStep:
    if action == ManualAction.REFUND:
        return ProviderStep(
            actions=REFUND_STEPS,
            pending=lambda o, e: o.status == S.REFUND_REQUESTED,
            succeeded=lambda o, e: o.status in (S.REFUNDED, S.CLOSED),
        )
    if action == ManualAction.RELEASE:
        return ProviderStep(
            actions=RELEASE_STEPS,
            pending=lambda o, e: o.status == S.RELEASE_REQUESTED,
            succeeded=lambda o, e: o.status in (S.RELEASED, S.CLOSED),
        )
    milestone = order.milestones.get(ref=milestone_ref)

    def released(o, e) -> bool:
        return OrderMilestone.objects.filter(pk=milestone.pk, status=OrderMilestone.Status.RELEASED).exists()

    def running(o, e) -> bool:
        steps = e.steps.filter(milestone_index=milestone.position, action__in=RELEASE_STEPS)
        return o.status == S.IN_PROGRESS and steps.filter(status__in=EscrowStep.OPEN).exists()

    return ProviderStep(actions=RELEASE_STEPS, pending=running, succeeded=released, milestone_index=milestone.position)


DONE = {
    ManualAction.RELEASE: "Released to the seller: the payout is confirmed on chain and the order closed.",
    ManualAction.MILESTONE: "Milestone {ref} released to the seller: the payout is confirmed on chain.",
    ManualAction.REFUND: "Refunded to the buyer: the payout is confirmed on chain and the order closed.",
}


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """Orders move only through their services (the state field is protected): support looks
    here; staff allowed to settle orders manually (`marketplace.settle_order_manually`) can
    release or refund an order's escrow from its page, with a reason and a confirmation."""

    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = ("public_id", "reference", "title", "buyer", "seller", "amount_usd", "status", "created_at")
    list_filter = ("status", "outcome")
    search_fields = ("public_id", "client_order_ref", "title", "buyer__email", "seller__email")
    list_select_related = ("buyer", "seller")
    date_hierarchy = "created_at"

    @admin.display(description="reference")
    def reference(self, order):
        """The short reference the member sees on their pages and e-mails (marketplace.references)."""
        return order_reference(order.pk)

    def get_search_results(self, request, queryset, search_term):
        """A member's short reference (`#A7K2-93`, typed any way) finds its order too."""
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        pk = order_pk_from_reference(search_term)
        if pk is not None:
            queryset |= self.model.objects.filter(pk=pk)
        return queryset, may_have_duplicates

    fields = (
        "public_id",
        "title",
        "description",
        "buyer",
        "seller",
        "listing",
        "amount_usd",
        "currency",
        "status",
        "outcome",
        "escrow_summary",
        "client_order_ref",
        "marketplace_id",
        "autopilot",
        "cancel_reason",
        "delivered_at",
        "closed_at",
        "created_at",
        "updated_at",
        "metadata",
    )
    readonly_fields = fields
    inlines = [OrderMilestoneInline]
    change_form_template = "admin/marketplace/order/change_form.html"

    @admin.display(description="amount (USD)", ordering="amount")
    def amount_usd(self, obj):
        return money_from_stroops(obj.amount)

    @admin.display(description="escrow")
    def escrow_summary(self, obj):
        escrow = order_escrow(obj)
        if escrow is None:
            return "-"
        url = reverse("admin:escrow_escrow_change", args=[escrow.pk])
        return format_html(
            '<a href="{}">{}</a>: {}, ${} in the contract',
            url,
            escrow.public_id,
            escrow.status,
            money_from_stroops(escrow.balance),
        )

    # --- manual settlement -------------------------------------------------------------------

    def has_settle_permission(self, request, obj=None) -> bool:
        return settle_manually_allowed(request.user)

    def get_urls(self):
        settle = self.admin_site.admin_view(self.settle_view)
        return [
            path(
                "<int:object_id>/release/", settle, {"action": ManualAction.RELEASE}, name="marketplace_order_release"
            ),
            path("<int:object_id>/refund/", settle, {"action": ManualAction.REFUND}, name="marketplace_order_refund"),
            path(
                "<int:object_id>/milestones/<path:ref>/release/",
                settle,
                {"action": ManualAction.MILESTONE},
                name="marketplace_order_milestone_release",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        order = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {}), **self._settle_context(request, order)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _settle_context(self, request, order: Order | None) -> dict:
        """The settlement buttons the order's page shows: only to staff allowed to use them,
        only while the order is in progress with a funded escrow."""
        if order is None or not self.has_settle_permission(request):
            return {}
        if order.status == S.DISPUTED:
            dispute = getattr(order, "dispute_record", None)
            url = reverse("admin:disputes_dispute_change", args=[dispute.pk]) if dispute else None
            return {"dispute_url": url}
        escrow = order_escrow(order)
        if order.status != S.IN_PROGRESS or escrow is None or escrow.funded_at is None:
            return {}
        buttons = [("Release to seller", reverse("admin:marketplace_order_release", args=[order.pk]))]
        if escrow.type == Escrow.Type.MULTI:
            buttons += [
                (
                    f"Release milestone {m.ref}",
                    reverse("admin:marketplace_order_milestone_release", args=[order.pk, m.ref]),
                )
                for m in order.milestones.all()
                if m.status != OrderMilestone.Status.RELEASED
            ]
        buttons.append(("Refund buyer", reverse("admin:marketplace_order_refund", args=[order.pk])))
        return {"settle_buttons": buttons}

    def settle_view(self, request, object_id, action, ref=None):
        if not self.has_settle_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order.objects.select_related("buyer", "seller"), pk=object_id)
        change_url = reverse("admin:marketplace_order_change", args=[order.pk])
        if order.status == S.DISPUTED:
            self.message_user(
                request,
                "This order is in dispute: settle it from the dispute's Resolve page, not by hand.",
                messages.ERROR,
            )
            return redirect(change_url)
        if order.status != S.IN_PROGRESS:
            self.message_user(
                request,
                f"Only an order in progress can be settled by hand; this one is {order.get_status_display()}.",
                messages.ERROR,
            )
            return redirect(change_url)
        try:
            preview = order_settlement_preview(order=order, action=action, milestone_ref=ref)
        except ServiceError as refused:
            self.message_user(request, refused.message, messages.ERROR)
            return redirect(change_url)
        form = ManualSettlementForm(request.POST if request.method == "POST" else None, preview=preview)
        if request.method == "POST" and form.is_valid():
            after = provider_steps_mark()
            try:
                order_settle_manually(
                    order=order,
                    action=action,
                    milestone_ref=ref,
                    reason=form.cleaned_data["reason"],
                    staff_user=request.user,
                )
            except ServiceError as refused:
                form.add_error(refused.field if refused.field in form.fields else None, refused.message)
            else:
                self._payout_report(request, order, action, ref, after=after)
                return redirect(change_url)
        titles = {ManualAction.MILESTONE: f"Release milestone {ref}"}
        context = {
            **self.admin_site.each_context(request),
            "title": f"{titles.get(action, ManualAction(action).label)}: {order.public_id}",
            "opts": self.model._meta,
            "original": order,
            "order": order,
            "action": action,
            "milestone_ref": ref,
            "preview": preview,
            "money": preview.dollars,
            "order_amount_usd": money_from_stroops(order.amount),
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/marketplace/order/settle.html", context)

    def _payout_report(self, request, order: Order, action: str, ref: str | None, *, after: int) -> None:
        """The settlement is recorded; say whether the chain has paid it yet."""
        try:
            order, finished = provider_step_await(order, manual_payout_step(order, action, ref), after=after)
        except ServiceError as refused:
            current = Order.objects.get(pk=order.pk)
            self.message_user(
                request,
                f"The chain refused the payout ({refused.message}). The order is {current.get_status_display()} "
                "and the money is still in its escrow: you can try again.",
                messages.ERROR,
            )
            return
        if finished:
            self.message_user(request, DONE[action].format(ref=ref), messages.SUCCESS)
        else:
            self.message_user(
                request,
                "The payout is on its way on chain; the order moves on when it confirms. A step the provider "
                "does not answer retries on its own (see the escrow's steps, or use Retry now there).",
                messages.INFO,
            )


class ReviewHideForm(forms.Form):
    reason = forms.CharField(
        max_length=HIDE_REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Why it is hidden (kept in the audit log and shown here): abuse, personal data, off-topic…",
    )


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    """Buyers write reviews and sellers reply; support reads them and hides one with a reason
    (review_hide, audited). A hidden review leaves every page and every average."""

    list_display = ("public_id", "rating", "excerpt", "seller", "buyer", "hidden", "created_at")
    list_filter = ("hidden", "rating")
    search_fields = ("public_id", "body", "seller__email", "seller__display_name", "buyer__email", "order__public_id")
    list_select_related = ("seller", "buyer")
    date_hierarchy = "created_at"
    fields = (
        "public_id",
        "order",
        "listing",
        "seller",
        "buyer",
        "rating",
        "body",
        "reply",
        "replied_at",
        "created_at",
        "hidden",
        "hidden_reason",
        "hidden_at",
        "moderation",
    )
    readonly_fields = fields

    @admin.display(description="review")
    def excerpt(self, obj):
        return obj.body if len(obj.body) <= 80 else obj.body[:79] + "…"

    def has_hide_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("marketplace.change_review")

    @admin.display(description="moderation")
    def moderation(self, obj):
        if obj.hidden:
            return "Hidden: members no longer see it."
        return format_html(
            '<a class="button" href="{}">Hide this review…</a>', reverse("admin:marketplace_review_hide", args=[obj.pk])
        )

    def get_urls(self):
        return [
            path(
                "<int:object_id>/hide/",
                self.admin_site.admin_view(self.hide_view),
                name="marketplace_review_hide",
            ),
            *super().get_urls(),
        ]

    def hide_view(self, request, object_id):
        if not self.has_hide_permission(request):
            raise PermissionDenied
        review = get_object_or_404(Review.objects.select_related("buyer", "seller"), pk=object_id)
        change_url = reverse("admin:marketplace_review_change", args=[review.pk])
        form = ReviewHideForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                review_hide(review=review, actor=request.user, reason=form.cleaned_data["reason"])
            except ServiceError as refused:
                form.add_error(refused.field if refused.field in form.fields else None, refused.message)
            else:
                self.message_user(request, "The review is hidden from the marketplace.", messages.SUCCESS)
                return redirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Hide review {review.public_id}",
            "opts": self.model._meta,
            "original": review,
            "review": review,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/marketplace/review/hide.html", context)
