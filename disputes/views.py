"""Web views of the disputes app on the order page: opening a dispute (with a first file), and
the case's forms for the buyer and the seller: evidence, a message, withdrawing. Each calls one
service (disputes.services); a refusal comes back by field with what was typed kept."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404
from django.views.decorators.http import require_GET, require_POST

from disputes.forms import EvidenceForm, MessageForm, WithdrawForm
from disputes.models import Dispute, DisputeEvidence
from disputes.services import (
    dispute_evidence_add,
    dispute_message_post,
    dispute_open,
    dispute_party_of,
    dispute_withdraw,
)
from marketplace.order_forms import DisputeForm
from marketplace.order_views import _back, _form_refused, _participant, _refused
from offerhub.errors import ServiceError
from offerhub.files import private_file_response

# A case that moved on while a form was being filled in, in plain words.
CASE_STATE_WORDS = {
    Dispute.Status.OPEN: "open",
    Dispute.Status.UNDER_REVIEW: "under review by support",
    Dispute.Status.RESOLVED: "resolved",
    Dispute.Status.WITHDRAWN: "withdrawn",
}


@login_required
@require_POST
def order_dispute_view(request, public_id):
    """Either side opens a dispute: the order and its escrow freeze, and a case opens for support
    (disputes.services.dispute_open, which takes the order's own `dispute` transition)."""
    order, actor = _participant(request, public_id)
    form = DisputeForm(request.POST, request.FILES)
    if not form.is_valid():
        return _form_refused(request, order, "dispute", form, "Please say what went wrong.")
    details = form.cleaned_data["details"].strip()
    party = "BUYER" if order.is_buyer(request.user) else "SELLER"
    upload = form.cleaned_data.get("file")
    try:
        # The case and its first file together: a refused file opens nothing, the form comes back.
        with transaction.atomic():
            dispute = dispute_open(
                order=order,
                actor=actor,
                opened_by=party,
                reason=form.cleaned_data["reason"],
                evidence=[details] if details else None,
            )
            if upload is not None:
                dispute_evidence_add(dispute=dispute, party=party, actor=actor, file=upload)
    except ServiceError as error:
        if error.field == "file":
            form.add_error("file", error.message[:1].upper() + error.message[1:])
            return _form_refused(request, order, "dispute", form)
        return _refused(request, order, error)
    messages.success(request, "Dispute opened. The money stays in escrow until support decides; they contact you both.")
    return _back(order)


def _case(request, public_id):
    """The order, its case and the party the signed-in buyer or seller speaks as; support answers
    from the backoffice (403), anyone else gets the order's 404."""
    order, actor = _participant(request, public_id)
    dispute = getattr(order, "dispute_record", None)
    if dispute is None:
        raise Http404("This order has no dispute")
    return order, actor, dispute, dispute_party_of(dispute=dispute, user=request.user)


def _case_refused(request, order, name: str, form, error: ServiceError, *, doing: str):
    """A service's refusal: by field on the form (what was typed kept), or, when the case moved on
    meanwhile (resolved, withdrawn), a message saying so."""
    if error.code in ("FORBIDDEN", "INSUFFICIENT_SCOPE"):
        raise PermissionDenied(error.message)
    if error.code == "INVALID_STATE":
        now = Dispute.objects.get(order=order)
        messages.error(request, f"The dispute is {CASE_STATE_WORDS[now.status]}: {doing}.")
        return _back(order)
    form.refused(error)
    return _form_refused(request, order, name, form)


@login_required
@require_POST
def dispute_evidence_view(request, public_id):
    """The buyer or the seller adds a piece of evidence: a text, a link, or a file."""
    order, actor, dispute, party = _case(request, public_id)
    form = EvidenceForm(request.POST, request.FILES, auto_id="evidence-%s")
    if not form.is_valid():
        return _form_refused(request, order, "evidence", form)
    try:
        dispute_evidence_add(
            dispute=dispute,
            party=party,
            actor=actor,
            text=form.cleaned_data["text"],
            link=form.cleaned_data["link"],
            file=form.cleaned_data.get("file"),
        )
    except ServiceError as error:
        return _case_refused(request, order, "evidence", form, error, doing="no more evidence can be added")
    messages.success(request, "Evidence added: the other side and support can see it.")
    return _back(order)


@login_required
@require_POST
def dispute_message_view(request, public_id):
    """The buyer or the seller writes in the case's thread; the others are told by e-mail."""
    order, actor, dispute, party = _case(request, public_id)
    form = MessageForm(request.POST, auto_id="message-%s")
    if not form.is_valid():
        return _form_refused(request, order, "message", form)
    try:
        dispute_message_post(dispute=dispute, party=party, actor=actor, body=form.cleaned_data["body"])
    except ServiceError as error:
        return _case_refused(request, order, "message", form, error, doing="no more messages can be posted")
    messages.success(request, "Message sent: the other side and support are told by e-mail.")
    return _back(order)


@login_required
@require_POST
def dispute_withdraw_view(request, public_id):
    """The party who opened the dispute takes it back while support has not picked it up yet,
    after ticking the confirmation: the order goes on as before."""
    order, actor, dispute, party = _case(request, public_id)
    if party != dispute.opened_by:
        raise PermissionDenied("only the party who opened the dispute can withdraw it")
    form = WithdrawForm(request.POST, auto_id="withdraw-%s")
    if not form.is_valid():
        return _form_refused(request, order, "withdraw", form)
    try:
        dispute_withdraw(dispute=dispute, party=party, actor=actor)
    except ServiceError as error:
        return _case_refused(request, order, "withdraw", form, error, doing="it can no longer be withdrawn")
    messages.success(request, "Dispute withdrawn. The order goes on as before.")
    return _back(order)


@login_required
@require_GET
def dispute_evidence_file(request, dispute_id, evidence_id):
    """A dispute's evidence file, for the order's buyer and seller and for staff who handle
    disputes; anyone else gets the same 404 as for a file that does not exist."""
    evidence = (
        DisputeEvidence.objects.select_related("dispute__order")
        .filter(dispute__public_id=dispute_id, public_id=evidence_id, kind=DisputeEvidence.Kind.FILE)
        .first()
    )
    if evidence is None or not _may_read_case(request.user, evidence.dispute):
        raise Http404("No such file")
    return private_file_response(evidence.file, filename=f"{dispute_id}-{evidence.file_name}", inline=evidence.is_image)


def _may_read_case(user, dispute) -> bool:
    order = dispute.order
    return order.is_participant(user) or (user.is_staff and user.has_perm("disputes.view_dispute"))
