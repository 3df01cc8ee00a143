"""Web views of the disputes app: opening a dispute from the order page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.views.decorators.http import require_GET, require_POST

from disputes.models import DisputeEvidence
from disputes.services import dispute_open
from marketplace.order_forms import DisputeForm
from marketplace.order_views import _back, _form_refused, _participant, _refused
from offerhub.errors import ServiceError
from offerhub.files import private_file_response


@login_required
@require_POST
def order_dispute_view(request, public_id):
    """Either side opens a dispute: the order and its escrow freeze, and a case opens for support
    (disputes.services.dispute_open, which takes the order's own `dispute` transition)."""
    order, actor = _participant(request, public_id)
    form = DisputeForm(request.POST)
    if not form.is_valid():
        return _form_refused(request, order, "dispute", form, "Please say what went wrong.")
    details = form.cleaned_data["details"].strip()
    try:
        dispute_open(
            order=order,
            actor=actor,
            opened_by="BUYER" if order.is_buyer(request.user) else "SELLER",
            reason=form.cleaned_data["reason"],
            evidence=[details] if details else None,
        )
    except ServiceError as error:
        return _refused(request, order, error)
    messages.success(request, "Dispute opened. The money stays in escrow until support decides; they contact you both.")
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
