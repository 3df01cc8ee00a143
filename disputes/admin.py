"""The dispute queue and the case page of the backoffice. Support acts only through the
dispute services (assign, reassign, reply, resolve), which audit and publish; no field is
edited here: every action is a POST of its own, with CSRF, calling one service."""

from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince, timeuntil
from django.views.decorators.http import require_POST

from disputes.api import DISPUTE_PAYOUT
from disputes.models import Dispute, DisputeEvidence, DisputeMessage, Party
from disputes.services import (
    MESSAGE_MAX_CHARS,
    dispute_assign,
    dispute_message_post,
    dispute_reassign,
    dispute_resolve,
)
from escrow.models import Escrow
from escrow.selectors import EscrowServiceUnavailable, escrow_public_view
from escrow.services import TRUSTLESS_WORK_FEE_BPS, escrow_fees
from marketplace.models import Order
from marketplace.order_views import _escrow_link
from marketplace.orders import OrderActor, order_escrow, order_escrow_unpaid
from marketplace.orders_api import provider_step_await, provider_steps_mark
from offerhub.admin import ReadOnlyAdmin
from offerhub.errors import ServiceError
from offerhub.forms import MoneyFormField
from offerhub.money import money_from_stroops, money_to_stroops

# The service names the API's fields; the form shows the refusal by its own field.
FORM_FIELD_OF = {"releaseAmount": "release_amount", "refundAmount": "refund_amount", "decision": "decision"}
CSS = {"all": ["css/admin.css", "css/admin-disputes.css"]}
CHAIN_UNREADABLE = "could not read the chain now"


def agent_name(user) -> str:
    """Who reviews a case, as the queue shows it and "assigned to me" finds it."""
    return user.email


def dispute_agents():
    """Active staff who may take a case: those with the permission to handle disputes, given
    to them or to one of their groups (a superuser has every permission)."""
    may_handle = (
        Q(is_superuser=True)
        | Q(user_permissions__content_type__app_label="disputes", user_permissions__codename="change_dispute")
        | Q(groups__permissions__content_type__app_label="disputes", groups__permissions__codename="change_dispute")
    )
    users = get_user_model().objects.filter(may_handle, is_staff=True, is_active=True)
    return users.distinct().order_by("email")


def disputes_overdue(queryset, now=None):
    """Dispute.is_overdue as a filter: unsettled, the other party silent, and their time is up."""
    return queryset.filter(
        status__in=Dispute.UNSETTLED, responded_at__isnull=True, respond_by__lt=now or timezone.now()
    )


def _evidence_file_url(evidence: DisputeEvidence) -> str:
    return reverse(
        "dispute-evidence-file", kwargs={"dispute_id": evidence.dispute.public_id, "evidence_id": evidence.public_id}
    )


def evidence_html(evidence: DisputeEvidence):
    """A piece of evidence as support reads it: the text, the link, or the file (an image
    previewed, a PDF as a link), served by the access-checked view; never raw JSON."""
    caption = format_html('<span class="offerhub-evidence-text">{}</span>', evidence.text) if evidence.text else ""
    if evidence.kind == DisputeEvidence.Kind.LINK:
        return format_html(
            '<a href="{}" rel="noopener noreferrer nofollow" target="_blank">{}</a> {}',
            evidence.link,
            evidence.link,
            caption,
        )
    if evidence.kind == DisputeEvidence.Kind.FILE:
        url = _evidence_file_url(evidence)
        size = filesizeformat(evidence.file_size or 0)
        if evidence.is_image:
            return format_html(
                '<a href="{}" target="_blank"><img class="offerhub-evidence-image" src="{}" alt="{}"></a>'
                '<span class="offerhub-evidence-file">{} ({})</span> {}',
                url,
                url,
                evidence.file_name,
                evidence.file_name,
                size,
                caption,
            )
        return format_html('<a href="{}">{}</a> (PDF, {}) {}', url, evidence.file_name, size, caption)
    return caption


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


class OverdueFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "overdue")]

    def queryset(self, request, queryset):
        return disputes_overdue(queryset) if self.value() == "yes" else queryset


# --- Payout preview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Payout:
    """One side's payout: gross, the contract's fees, and what reaches the wallet (stroops)."""

    gross: int = 0
    trustless_work: int = 0
    platform: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.trustless_work - self.platform

    def __add__(self, other: "Payout") -> "Payout":
        return Payout(
            self.gross + other.gross, self.trustless_work + other.trustless_work, self.platform + other.platform
        )

    @classmethod
    def of(cls, amount: int, platform_fee_percent: Decimal) -> "Payout":
        if amount <= 0:
            return cls()
        fees = escrow_fees(amount=amount, platform_fee_percent=platform_fee_percent)
        return cls(amount, fees.trustless_work, fees.platform)

    @property
    def usd(self) -> dict:
        return {
            "gross": money_from_stroops(self.gross),
            "trustless_work": money_from_stroops(self.trustless_work),
            "platform": money_from_stroops(self.platform),
            "net": money_from_stroops(self.net),
        }


@dataclass(frozen=True)
class PayoutPreview:
    seller: Payout
    buyer: Payout
    rows: list  # (milestone title, seller Payout, buyer Payout), one per open milestone


def payout_preview(*, milestones, seller_shares: list[int], platform_fee_percent: Decimal) -> PayoutPreview:
    """Each open milestone is one payout per side on chain, and each payout pays its own fees
    (rounded down to the stroop): so the totals are the sum of the milestones' nets."""
    rows, seller, buyer = [], Payout(), Payout()
    for milestone, to_seller in zip(milestones, seller_shares, strict=True):
        seller_part = Payout.of(to_seller, platform_fee_percent)
        buyer_part = Payout.of(milestone.amount - to_seller, platform_fee_percent)
        rows.append((milestone.title, seller_part, buyer_part))
        seller, buyer = seller + seller_part, buyer + buyer_part
    return PayoutPreview(seller=seller, buyer=buyer, rows=rows)


# --- Forms ------------------------------------------------------------------------------------


class DisputeResolveForm(forms.Form):
    decision = forms.ChoiceField(choices=Dispute.Decision.choices)
    release_amount = MoneyFormField(required=False, label="To the seller (USD, SPLIT only)")
    refund_amount = MoneyFormField(required=False, label="To the buyer (USD, SPLIT only)")
    note = forms.CharField(label="Decision note", widget=forms.Textarea(attrs={"rows": 4}))
    confirm = forms.BooleanField(required=True)

    def __init__(self, *args, held: int, milestones: list, multi: bool, previewing: bool = False, **kwargs):
        """`milestones`: the escrow's open milestones; a multi-release escrow gets one
        amount-to-the-seller field each (the buyer gets the rest of each)."""
        super().__init__(*args, **kwargs)
        self.held, self.milestones, self.multi = held, milestones, multi
        total = money_from_stroops(held)
        self.fields["confirm"].label = (
            f"I confirm the payout, before fees, of the ${total} the escrow holds: FULL_RELEASE pays the seller "
            f"${total} and the buyer $0.00; FULL_REFUND pays the buyer ${total} and the seller $0.00; SPLIT pays "
            "the seller and the buyer the amounts above."
        )
        if multi:
            for milestone in milestones:
                self.fields[self.milestone_field(milestone)] = MoneyFormField(
                    required=False,
                    allow_zero=True,
                    label=f"{milestone.title} (holds ${money_from_stroops(milestone.amount)}): to the seller",
                    widget=forms.NumberInput(
                        attrs={"step": "0.01", "inputmode": "decimal", "data-milestone-amount": milestone.amount}
                    ),
                )
            self.order_fields(
                ["decision", "release_amount", "refund_amount", *map(self.milestone_field, milestones), "note"]
            )
        if previewing:  # a preview decides nothing: no note or confirmation yet
            self.fields["note"].required = self.fields["confirm"].required = False

    @staticmethod
    def milestone_field(milestone) -> str:
        return f"milestone_{milestone.index}"

    def stroops(self, name: str) -> int | None:
        amount = self.cleaned_data.get(name)
        return None if amount is None else money_to_stroops(amount)

    def clean(self):
        data = super().clean()
        decision = data.get("decision")
        given = {m: self.stroops(self.milestone_field(m)) for m in self.milestones if self.multi}
        given = {m: amount for m, amount in given.items() if amount is not None}
        if not given:
            return data
        if decision != Dispute.Decision.SPLIT:
            for milestone in given:
                self.add_error(self.milestone_field(milestone), "per-milestone amounts are for a SPLIT")
            return data
        for milestone in self.milestones:
            field = self.milestone_field(milestone)
            if milestone not in given:
                self.add_error(field, "say what of this milestone goes to the seller (0 for nothing)")
            elif given[milestone] > milestone.amount:
                self.add_error(field, f"this milestone holds ${money_from_stroops(milestone.amount)}: at most that")
        if self.errors:
            return data
        to_seller = sum(given.values())
        for name, total in (("release_amount", to_seller), ("refund_amount", self.held - to_seller)):
            typed = self.stroops(name)
            if typed is not None and typed != total:
                self.add_error(
                    name, f"the milestones' amounts make ${money_from_stroops(total)}: leave this empty or match it"
                )
        return data

    def seller_by_ref(self) -> dict[str, int] | None:
        """{milestone ref: stroops to the seller} when the milestones are split one by one."""
        if not self.multi or self.cleaned_data.get("decision") != Dispute.Decision.SPLIT:
            return None
        shares = {m.ref: self.stroops(self.milestone_field(m)) for m in self.milestones}
        return shares if all(amount is not None for amount in shares.values()) else None

    def seller_shares(self) -> list[int] | None:
        """What each open milestone pays the seller as decided, or None (with errors by field)."""
        decision = self.cleaned_data["decision"]
        if decision == Dispute.Decision.FULL_RELEASE:
            return [m.amount for m in self.milestones]
        if decision == Dispute.Decision.FULL_REFUND:
            return [0 for _ in self.milestones]
        by_ref = self.seller_by_ref()
        if by_ref is not None:
            shares = [by_ref[m.ref] for m in self.milestones]
            to_seller = sum(shares)
        else:
            release, refund = self.stroops("release_amount"), self.stroops("refund_amount")
            for name, amount in (("release_amount", release), ("refund_amount", refund)):
                if amount is None:
                    self.add_error(name, "a SPLIT gives an amount to each side")
            if release is None or refund is None:
                return None
            if release + refund != self.held:
                self.add_error("release_amount", f"the two amounts must add up to ${money_from_stroops(self.held)}")
                return None
            shares, to_seller, left = [], release, release  # the seller's share fills the milestones in order
            for milestone in self.milestones:
                shares.append(min(left, milestone.amount))
                left -= shares[-1]
        if not 0 < to_seller < self.held:
            self.add_error(
                "release_amount", "each side of a SPLIT gets more than zero (else FULL_RELEASE or FULL_REFUND)"
            )
            return None
        return shares


class DisputeReplyForm(forms.Form):
    body = forms.CharField(
        label="Reply",
        max_length=MESSAGE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": MESSAGE_MAX_CHARS}),
    )
    internal = forms.BooleanField(required=False, label="Internal note: only staff see it, and no one is e-mailed")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)  # the labels are sentences


class DisputeReassignForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=None, label="Reassign to", empty_label=None)

    def __init__(self, *args, dispute: Dispute, **kwargs):
        super().__init__(*args, **kwargs)
        order = dispute.order
        others = dispute_agents().exclude(email__iexact=dispute.assigned_to)
        self.fields["agent"].queryset = others.exclude(pk__in=[order.buyer_id, order.seller_id])


def _reassign_form(dispute: Dispute) -> DisputeReassignForm | None:
    """The reassign form, or None when no other agent could take the case."""
    form = DisputeReassignForm(dispute=dispute)
    return form if form.fields["agent"].queryset.exists() else None


# --- The dispute queue and the case page ------------------------------------------------------


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    class Media:
        css = CSS

    # At 1366 px the queue gets the page's width (no app sidebar) and long ids and e-mails are cut
    # short on screen (admin-disputes.css), whole on hover and in the page.
    list_display = ("order_link", "amount_usd", "parties", "reason", "age", "deadline", "assignee", "status")
    list_display_links = None  # the order column links the case and the order itself
    list_filter = ("status", AssigneeFilter, OverdueFilter, "reason")
    search_fields = ("public_id", "order__public_id", "order__buyer__email", "order__seller__email")
    list_select_related = ("order__buyer", "order__seller")
    ordering = ("created_at", "pk")  # oldest first: the longest waiting case is handled first
    list_per_page = 50
    actions = ["assign_to_me"]
    change_form_template = "admin/disputes/dispute/change_form.html"
    # The case page shows the rest (order, escrow, evidence, thread) from its own context.
    fields = ("public_id", "status", "reason", "opened_by", "assigned_to", "created_at", "respond_by", "responded_at")
    readonly_fields = fields

    def get_fields(self, request, obj=None):
        """The case's summary; the decision once there is one (the page shows the rest)."""
        if obj is not None and obj.status == Dispute.Status.RESOLVED:
            return (*self.fields, "resolution_decision", "release_usd", "refund_usd", "decision_note", "resolved_at")
        if obj is not None and obj.withdrawn_at:
            return (*self.fields, "withdrawn_at")
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="to the seller (before fees)")
    def release_usd(self, obj):
        return "-" if obj.release_amount is None else f"${money_from_stroops(obj.release_amount)}"

    @admin.display(description="to the buyer (before fees)")
    def refund_usd(self, obj):
        return "-" if obj.refund_amount is None else f"${money_from_stroops(obj.refund_amount)}"

    def get_queryset(self, request):
        rows = super().get_queryset(request).select_related("order__buyer", "order__seller")
        return _not_their_own(rows, request.user, "order")

    def has_resolve_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm("disputes.change_dispute")

    @admin.display(description="order", ordering="order__public_id")
    def order_link(self, obj):
        """The case (by its order's title) and the order's own page."""
        return format_html(
            '<a class="offerhub-case-link" href="{}" title="Open the case {}">{}</a>'
            '<a class="offerhub-id" href="{}" title="{}">{}</a>',
            reverse("admin:disputes_dispute_change", args=[obj.pk]),
            obj.public_id,
            obj.order.title,
            reverse("admin:marketplace_order_change", args=[obj.order_id]),
            obj.order.public_id,
            obj.order.public_id,
        )

    @admin.display(description="amount", ordering="order__amount")
    def amount_usd(self, obj):
        return f"${money_from_stroops(obj.order.amount)}"

    @admin.display(description="parties", ordering="order__buyer__email")
    def parties(self, obj):
        return format_html(
            '<span class="offerhub-email" title="buyer {}"><span class="offerhub-role">buyer</span> {}</span>'
            '<span class="offerhub-email" title="seller {}"><span class="offerhub-role">seller</span> {}</span>',
            obj.order.buyer.email,
            obj.order.buyer.email,
            obj.order.seller.email,
            obj.order.seller.email,
        )

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        return timesince(obj.created_at, depth=1)

    @admin.display(description="deadline", ordering="respond_by")
    def deadline(self, obj):
        """The other party's answer: given, late (a red badge), or due."""
        if obj.responded_at is not None:
            return mark_safe('<span class="offerhub-badge offerhub-badge-ok">answered</span>')
        if obj.respond_by is None:
            return "-"
        when = timezone.localtime(obj.respond_by).strftime("%b %d, %H:%M")
        if obj.is_overdue():
            return format_html('<span class="offerhub-badge offerhub-badge-overdue">overdue</span> {}', when)
        if obj.status in Dispute.UNSETTLED:
            return format_html("due in {}<br>{}", timeuntil(obj.respond_by, depth=1), when)
        return when

    @admin.display(description="assignee", ordering="assigned_to")
    def assignee(self, obj):
        if not obj.assigned_to:
            return "-"
        return format_html('<span class="offerhub-email" title="{}">{}</span>', obj.assigned_to, obj.assigned_to)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "is_nav_sidebar_enabled": False}  # the table needs the width
        return super().changelist_view(request, extra_context)

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
        def action(view, name):
            return path(f"<int:object_id>/{name}/", self.admin_site.admin_view(view), name=f"disputes_dispute_{name}")

        return [
            action(self.resolve_view, "resolve"),
            action(require_POST(self.assign_view), "assign"),
            action(require_POST(self.reassign_view), "reassign"),
            action(require_POST(self.reply_view), "reply"),
            *super().get_urls(),
        ]

    # --- The case page ------------------------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        can_act = self.has_resolve_permission(request)
        context["can_resolve"] = can_act
        if obj is not None:
            context.update(self._case_context(request, obj, can_act=can_act))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _case_context(self, request, dispute: Dispute, *, can_act: bool) -> dict:
        order = dispute.order
        milestones = list(order.milestones.all())
        for milestone in milestones:
            milestone.dollars = money_from_stroops(milestone.amount)
            milestone.file_url = (
                reverse("order-evidence", args=[order.public_id, milestone.ref]) if milestone.evidence_file else ""
            )
        escrow = order_escrow(order)
        chain, chain_error = None, ""
        if escrow is not None and escrow.contract_id:
            try:
                chain = escrow_public_view(contract_id=escrow.contract_id, user=request.user)
            except EscrowServiceUnavailable:
                chain_error = CHAIN_UNREADABLE
            else:
                if chain is None:
                    chain_error = "the chain does not know this contract"
        single_evidence = ""
        if escrow is not None and not milestones:
            first = next(iter(escrow.milestones.all()), None)
            single_evidence = first.evidence if first is not None else ""
        evidence = list(dispute.evidence_items.select_related("dispute"))
        for item in evidence:
            item.html = evidence_html(item)
        statement = dispute.evidence if isinstance(dispute.evidence, list) else [dispute.evidence or ""]
        return {
            "dispute": dispute,
            "order": order,
            "order_admin_url": reverse("admin:marketplace_order_change", args=[order.pk]),
            "order_page_url": reverse("order-detail", args=[order.public_id]),
            "order_usd": money_from_stroops(order.amount),
            "milestones": milestones,
            "single_evidence": single_evidence,
            "escrow": escrow,
            "escrow_balance_usd": money_from_stroops(escrow.balance) if escrow else "",
            "chain": chain,
            "chain_error": chain_error,
            "escrow_link": _escrow_link(escrow),
            "statement": [str(line) for line in statement if str(line).strip()],
            "evidence_sides": [
                (label, [item for item in evidence if item.party == party])
                for label, party in (("Buyer", Party.BUYER), ("Seller", Party.SELLER), ("Support", Party.SUPPORT))
            ],
            "thread": list(dispute.messages.all()),
            "is_overdue": dispute.is_overdue(),
            "can_act": can_act,
            "reply_form": DisputeReplyForm() if can_act else None,
            "reassign_form": (
                _reassign_form(dispute) if can_act and dispute.status == Dispute.Status.UNDER_REVIEW else None
            ),
        }

    # --- Actions: each a POST calling one service --------------------------------------------

    def _acting_on(self, request, object_id) -> Dispute:
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        return get_object_or_404(self.get_queryset(request), pk=object_id)

    def _back(self, dispute: Dispute):
        return redirect("admin:disputes_dispute_change", dispute.pk)

    def assign_view(self, request, object_id):
        dispute = self._acting_on(request, object_id)
        try:
            dispute_assign(dispute=dispute, agent=agent_name(request.user), actor=OrderActor.for_user(request.user))
        except ServiceError as refused:
            self.message_user(request, f"Not assigned: {refused.message}.", messages.ERROR)
        else:
            self.message_user(request, f"{dispute.public_id} is assigned to you and under review.", messages.SUCCESS)
        return self._back(dispute)

    def reassign_view(self, request, object_id):
        dispute = self._acting_on(request, object_id)
        form = DisputeReassignForm(request.POST, dispute=dispute)
        if not form.is_valid():
            self.message_user(request, "Not reassigned: choose a support agent from the list.", messages.ERROR)
            return self._back(dispute)
        agent = agent_name(form.cleaned_data["agent"])
        try:
            dispute_reassign(dispute=dispute, agent=agent, actor=OrderActor.for_user(request.user))
        except ServiceError as refused:
            self.message_user(request, f"Not reassigned: {refused.message}.", messages.ERROR)
        else:
            self.message_user(request, f"{dispute.public_id} is now assigned to {agent}.", messages.SUCCESS)
        return self._back(dispute)

    def reply_view(self, request, object_id):
        dispute = self._acting_on(request, object_id)
        form = DisputeReplyForm(request.POST)
        if not form.is_valid():
            problems = "; ".join(error for errors in form.errors.values() for error in errors)
            self.message_user(request, f"Nothing posted: {problems}", messages.ERROR)
            return self._back(dispute)
        internal = form.cleaned_data["internal"]
        try:
            dispute_message_post(
                dispute=dispute,
                party=Party.SUPPORT,
                actor=OrderActor.for_user(request.user),
                body=form.cleaned_data["body"],
                internal=internal,
            )
        except ServiceError as refused:
            self.message_user(request, f"Nothing posted: {refused.message}.", messages.ERROR)
        else:
            done = "Internal note added (not sent to the parties)." if internal else "Reply sent to both parties."
            self.message_user(request, done, messages.SUCCESS)
        return self._back(dispute)

    # --- Resolve ------------------------------------------------------------------------------

    def resolve_view(self, request, object_id):
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        dispute = get_object_or_404(self.get_queryset(request), pk=object_id)
        change_url = reverse("admin:disputes_dispute_change", args=[dispute.pk])
        if dispute.status != Dispute.Status.UNDER_REVIEW:
            self.message_user(request, f"Only a dispute under review can be resolved; this one is {dispute.status}.")
            return redirect(change_url)
        held = order_escrow_unpaid(dispute.order)
        escrow = order_escrow(dispute.order)
        open_milestones = [m for m in escrow.milestones.all() if not (m.released or m.resolved)]
        previewing = request.method == "POST" and "preview" in request.POST
        form = DisputeResolveForm(
            request.POST or None,
            held=held,
            milestones=open_milestones,
            multi=escrow.type == Escrow.Type.MULTI,
            previewing=previewing,
        )
        preview = None
        if request.method == "POST" and form.is_valid():
            if not previewing:
                if self._resolve(request, form, dispute):  # else the service's refusal, by its field
                    return redirect(change_url)
            elif (shares := form.seller_shares()) is not None:
                preview = payout_preview(
                    milestones=open_milestones, seller_shares=shares, platform_fee_percent=escrow.platform_fee_percent
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resolve {dispute.public_id}",
            "opts": self.model._meta,
            "original": dispute,
            "dispute": dispute,
            "form": form,
            "held": held,
            "held_usd": money_from_stroops(held),
            "change_url": change_url,
            "preview": preview,
            "multi": escrow.type == Escrow.Type.MULTI,
            "trustless_work_fee_bps": TRUSTLESS_WORK_FEE_BPS,
            "trustless_work_percent": Decimal(TRUSTLESS_WORK_FEE_BPS) / 100,
            "platform_fee_percent": escrow.platform_fee_percent,
            "milestones": open_milestones,
        }
        return TemplateResponse(request, "admin/disputes/dispute/resolve.html", context)

    def _resolve(self, request, form: DisputeResolveForm, dispute: Dispute) -> bool:
        by_ref = form.seller_by_ref()
        after = provider_steps_mark()
        try:
            dispute = dispute_resolve(
                dispute=dispute,
                decision=form.cleaned_data["decision"],
                # Split milestone by milestone, the service adds the totals up from them.
                release_amount=None if by_ref else form.stroops("release_amount"),
                refund_amount=None if by_ref else form.stroops("refund_amount"),
                note=form.cleaned_data["note"],
                actor=OrderActor.for_user(request.user),
                milestone_release_amounts=by_ref,
            )
        except ServiceError as refused:
            form.add_error(FORM_FIELD_OF.get(refused.field), refused.message)
            return False
        self._payout_report(request, dispute, after=after)
        return True

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


# --- The case file's records, read-only ------------------------------------------------------


def _dispute_link(dispute: Dispute):
    url = reverse("admin:disputes_dispute_change", args=[dispute.pk])
    return format_html('<a href="{}">{}</a>', url, dispute.public_id)


def _not_their_own(rows, user, order_path: str):
    """Staff who bought or sold an order never see its case here (nor support's notes on it):
    another agent handles it, and the services refuse them too."""
    return rows.exclude(**{f"{order_path}__buyer": user.pk}).exclude(**{f"{order_path}__seller": user.pk})


@admin.register(DisputeEvidence)
class DisputeEvidenceAdmin(ReadOnlyAdmin):
    class Media:
        css = CSS

    list_display = ("public_id", "case", "party", "kind", "content", "created_at")
    list_filter = ("party", "kind")
    search_fields = ("public_id", "dispute__public_id", "text", "link", "file_name")
    list_select_related = ("dispute",)
    fields = ("public_id", "case", "party", "author", "kind", "content", "file_size", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return _not_their_own(super().get_queryset(request), request.user, "dispute__order")

    @admin.display(description="dispute", ordering="dispute__public_id")
    def case(self, obj):
        return _dispute_link(obj.dispute)

    @admin.display(description="evidence")
    def content(self, obj):
        return evidence_html(obj)


@admin.register(DisputeMessage)
class DisputeMessageAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "case", "party", "author_name", "visibility", "excerpt", "created_at")
    list_filter = ("party", "internal")
    search_fields = ("public_id", "dispute__public_id", "author_name", "body")
    list_select_related = ("dispute",)
    fields = ("public_id", "case", "party", "author", "author_name", "visibility", "body", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return _not_their_own(super().get_queryset(request), request.user, "dispute__order")

    @admin.display(description="dispute", ordering="dispute__public_id")
    def case(self, obj):
        return _dispute_link(obj.dispute)

    @admin.display(description="seen by", ordering="internal")
    def visibility(self, obj):
        return "staff only (internal note)" if obj.internal else "the parties and staff"

    @admin.display(description="message")
    def excerpt(self, obj):
        return obj.body if len(obj.body) <= 120 else obj.body[:117] + "..."
