"""Web views of the disputes app: opening a dispute from the order page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_POST

from disputes.services import dispute_open
from marketplace.order_forms import DisputeForm
from marketplace.order_views import _back, _form_refused, _participant, _refused
from offerhub.errors import ServiceError


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
