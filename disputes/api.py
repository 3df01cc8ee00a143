"""Disputes over the API: opening one on an order (API.md §9), and the case (§10): list,
read, assign, resolve; and [X] the case file: evidence (with files), the thread, withdrawal by
the opener, reassignment. The resolution is paid on chain like the orders API's provider steps:
the view waits up to OFFERHUB_SYNC_WAIT_SECONDS for the payout (woken by the order's change
notification, on the event loop under ASGI) and answers 200 with the
closed order, or 202 while the chain is slower (the order follows in the background).

Evidence files come in the JSON body, base64 (docs/api.md "Evidence files" says why): the API
stays JSON-only, and a retried upload fingerprints like every other idempotent POST."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema

from disputes import services as dispute_services
from disputes.api_serializers import (
    DisputeAssignInput,
    DisputeEvidenceInput,
    DisputeEvidenceOutput,
    DisputeMessageInput,
    DisputeMessageOutput,
    DisputeResolveInput,
    DisputeWithdrawInput,
)
from disputes.filters import DisputeFilter
from disputes.models import Dispute
from disputes.selectors import (
    dispute_evidence_get,
    dispute_evidence_rows,
    dispute_get,
    dispute_messages_visible,
    disputes_as_api,
    disputes_visible,
    evidence_as_api,
    message_as_api,
)
from disputes.services import (
    RESOLUTION_STEPS,
    dispute_assign,
    dispute_evidence_add,
    dispute_message_post,
    dispute_open,
    dispute_reassign,
    dispute_resolve,
    dispute_withdraw,
)
from marketplace.api_serializers import DisputeOpenInput, DisputeWithOrderOutput
from marketplace.models import Order
from marketplace.orders import OrderActor
from marketplace.orders_api import ProviderStep, provider_step_answer, provider_steps_mark
from marketplace.orders_selectors import dispute_as_api, order_as_api, order_get
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.idempotency import RETENTION_ORDERS
from offerhub.api.pagination import paginate
from offerhub.api.serializers import validated
from offerhub.errors import ServiceError
from offerhub.files import private_file_response
from offerhub.filters import rows_filtered
from offerhub.money import money_to_stroops

TAGS = ["disputes"]
S = Order.Status


class OrderDisputeOpenView(ApiView):
    required_scope = "write"
    idempotency_retention = RETENTION_ORDERS
    atomic_handler = False  # the escrow's dispute call must commit before the runner signs it

    @extend_schema(
        summary="Open the order's dispute: the order and its escrow freeze",
        tags=["orders"],
        request=DisputeOpenInput,
        responses={201: DisputeWithOrderOutput},
    )
    def post(self, request, order_id):
        data = validated(DisputeOpenInput, request.data)
        if data.get("orderId") not in (None, order_id):
            raise ServiceError("INVALID_REQUEST", "orderId must be the order in the path", field="orderId")
        order = order_get(principal=request.auth, public_id=order_id)
        dispute = dispute_open(
            order=order,
            actor=OrderActor.for_api_key(request.auth),
            opened_by=data["openedBy"],
            reason=data["reason"],
            evidence=data.get("evidence"),
        )
        order = order_get(principal=request.auth, public_id=order_id)
        # A fresh read, not refresh_from_db(): django-fsm unprotects `status` class-wide meanwhile.
        dispute = Dispute.objects.select_related("order").get(pk=dispute.pk)
        return api_response(dispute_as_api(dispute, order=order_as_api(order)), status=201)


# A decided case is paid by its resolution step; the order closes when the chain confirms it
# (the admin's Resolve page waits on the same).
DISPUTE_PAYOUT = ProviderStep(
    actions=RESOLUTION_STEPS,
    pending=lambda order, escrow: order.status in (S.DISPUTED, S.RELEASE_REQUESTED, S.REFUND_REQUESTED),
    succeeded=lambda order, escrow: order.status == S.CLOSED,
)


def _dispute_answer(request, public_id: str, *, status: int = 200):
    return api_response(disputes_as_api([dispute_get(principal=request.auth, public_id=public_id)])[0], status=status)


class DisputeListView(ApiView):
    required_scope = "read"
    filter_backends = [DjangoFilterBackend]
    filterset_class = DisputeFilter
    queryset = Dispute.objects.none()  # for the schema; the rows are the key's own below

    @extend_schema(summary="List disputes (newest first)", tags=TAGS, responses=DisputeWithOrderOutput(many=True))
    def get(self, request):
        rows = rows_filtered(view=self, request=request, rows=disputes_visible(principal=request.auth))
        page = paginate(rows, params=request.query_params, id_field="public_id")
        return api_list_response(disputes_as_api(page.items), has_more=page.has_more, next_cursor=page.next_cursor)


class DisputeDetailView(ApiView):
    required_scope = "read"

    @extend_schema(summary="Get a dispute", tags=TAGS, responses=DisputeWithOrderOutput)
    def get(self, request, dispute_id):
        return _dispute_answer(request, dispute_id)


class DisputeAssignView(ApiView):
    required_scope = "support"
    idempotency_retention = RETENTION_ORDERS

    @extend_schema(
        summary="Take the case for review: OPEN → UNDER_REVIEW",
        tags=TAGS,
        request=DisputeAssignInput,
        responses={200: DisputeWithOrderOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeAssignInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        dispute_assign(dispute=dispute, agent=data["assignedTo"], actor=OrderActor.for_api_key(request.auth))
        return _dispute_answer(request, dispute_id)


class DisputeResolveView(ApiView):
    required_scope = "support"
    idempotency_retention = RETENTION_ORDERS
    atomic_handler = False  # the payout's step must commit before the runner submits it

    @extend_schema(
        summary="Decide the case and pay it out on chain (202 while the chain is slower)",
        tags=TAGS,
        request=DisputeResolveInput,
        responses={200: DisputeWithOrderOutput, 202: DisputeWithOrderOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeResolveInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        after = provider_steps_mark()
        dispute = dispute_resolve(
            dispute=dispute,
            decision=data["decision"],
            release_amount=_stroops(data.get("releaseAmount")),
            refund_amount=_stroops(data.get("refundAmount")),
            note=data.get("note") or "",
            actor=OrderActor.for_api_key(request.auth),
            milestone_release_amounts=_milestone_shares(data.get("milestones")),
        )
        return provider_step_answer(
            self,
            Order.objects.get(pk=dispute.order_id),
            DISPUTE_PAYOUT,
            after=after,
            answer=lambda finished: _dispute_answer(request, dispute_id, status=200 if finished else 202),
        )


def _stroops(amount):
    return None if amount is None else money_to_stroops(amount)


def _milestone_shares(shares: list[dict] | None) -> dict[str, int] | None:
    """{milestone ref: stroops to the seller} for a SPLIT of a multi-release escrow."""
    if shares is None:
        return None
    return {share["milestoneRef"]: money_to_stroops(share["releaseAmount"]) for share in shares}


class DisputeReassignView(ApiView):
    """Hand a case under review to another agent; the review goes on."""

    required_scope = "support"
    idempotency_retention = RETENTION_ORDERS

    @extend_schema(
        summary="Hand the case to another agent while UNDER_REVIEW",
        tags=TAGS,
        request=DisputeAssignInput,
        responses={200: DisputeWithOrderOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeAssignInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        dispute_reassign(dispute=dispute, agent=data["assignedTo"], actor=OrderActor.for_api_key(request.auth))
        return _dispute_answer(request, dispute_id)


class DisputeWithdrawView(ApiView):
    """The party who opened the case takes it back while it is OPEN: the order goes back to
    IN_PROGRESS. The escrow's dispute flag stays on chain (Trustless Work v1 cannot clear it),
    so the order's later release or refund is paid by the platform as dispute resolver."""

    required_scope = "write"
    idempotency_retention = RETENTION_ORDERS

    @extend_schema(
        summary="Withdraw the dispute (its opener, while OPEN): the order goes on",
        tags=TAGS,
        request=DisputeWithdrawInput,
        responses={200: DisputeWithOrderOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeWithdrawInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        dispute_withdraw(dispute=dispute, party=data["withdrawnBy"], actor=OrderActor.for_api_key(request.auth))
        return _dispute_answer(request, dispute_id)


class DisputeEvidenceView(ApiView):
    """The case's evidence from both sides (and support): texts, links and files."""

    required_scopes = {"GET": "read", "POST": "write"}
    idempotency_retention = RETENTION_ORDERS

    @extend_schema(
        summary="List the case's evidence (newest first)", tags=TAGS, responses=DisputeEvidenceOutput(many=True)
    )
    def get(self, request, dispute_id):
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        page = paginate(dispute_evidence_rows(dispute=dispute), params=request.query_params, id_field="public_id")
        items = [evidence_as_api(evidence, dispute=dispute) for evidence in page.items]
        return api_list_response(items, has_more=page.has_more, next_cursor=page.next_cursor)

    @extend_schema(
        summary="Add evidence: a text, a link, or a file (PDF or image, base64) with a caption",
        tags=TAGS,
        request=DisputeEvidenceInput,
        responses={201: DisputeEvidenceOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeEvidenceInput, request.data)
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        evidence = dispute_evidence_add(
            dispute=dispute,
            party=data["submittedBy"],
            actor=OrderActor.for_api_key(request.auth),
            text=data.get("text") or "",
            link=data.get("link") or "",
            file=_uploaded(data.get("file")),
        )
        return api_response(evidence_as_api(evidence, dispute=dispute), status=201)


def _uploaded(file: dict | None) -> SimpleUploadedFile | None:
    """The decoded file as an upload the service checks (type by name and by content); one over
    the evidence limit is refused here as too large, 413, before anything is stored."""
    if file is None:
        return None
    content, limit = file["contentBase64"], dispute_services.EVIDENCE_MAX_BYTES
    if len(content) > limit:
        raise ServiceError(
            "PAYLOAD_TOO_LARGE",
            f"the file is larger than {limit // (1024 * 1024)} MB",
            field="file",
            details={"maxBytes": limit},
        )
    return SimpleUploadedFile(file["name"], content)


# What an evidence file may be (disputes.services.EVIDENCE_TYPES), as it is served.
EVIDENCE_MEDIA_TYPES = ("application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp")


class DisputeEvidenceFileView(ApiView):
    """Download an evidence file (always as an attachment, never rendered)."""

    required_scope = "read"

    @extend_schema(
        summary="Download an evidence file",
        tags=TAGS,
        responses={(200, media_type): OpenApiTypes.BINARY for media_type in EVIDENCE_MEDIA_TYPES},
    )
    def get(self, request, dispute_id, evidence_id):
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        evidence = dispute_evidence_get(dispute=dispute, public_id=evidence_id)
        if not evidence.file:
            raise ServiceError(
                "NOT_FOUND", f"Evidence {evidence.public_id} has no file", details={"evidenceId": evidence.public_id}
            )
        return private_file_response(evidence.file, filename=f"{dispute.public_id}-{evidence.file_name}")


class DisputeMessagesView(ApiView):
    """The case's thread between buyer, seller and support; support's internal notes are
    listed only to keys with the support scope."""

    required_scopes = {"GET": "read", "POST": "write"}
    idempotency_retention = RETENTION_ORDERS

    @extend_schema(
        summary="List the case's thread (newest first)", tags=TAGS, responses=DisputeMessageOutput(many=True)
    )
    def get(self, request, dispute_id):
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        rows = dispute_messages_visible(dispute=dispute, principal=request.auth)
        page = paginate(rows, params=request.query_params, id_field="public_id")
        items = [message_as_api(message, dispute=dispute) for message in page.items]
        return api_list_response(items, has_more=page.has_more, next_cursor=page.next_cursor)

    @extend_schema(
        summary="Post to the thread (an internal note needs the support scope)",
        tags=TAGS,
        request=DisputeMessageInput,
        responses={201: DisputeMessageOutput},
    )
    def post(self, request, dispute_id):
        data = validated(DisputeMessageInput, request.data)
        if data["internal"] and not request.auth.has_scope("support"):
            raise ServiceError(
                "INSUFFICIENT_SCOPE", "internal notes need the support scope", details={"field": "internal"}
            )
        dispute = dispute_get(principal=request.auth, public_id=dispute_id)
        message = dispute_message_post(
            dispute=dispute,
            party=data["postedBy"],
            actor=OrderActor.for_api_key(request.auth),
            body=data["body"],
            internal=data["internal"],
            author_name=data.get("authorName") or "",
        )
        return api_response(message_as_api(message, dispute=dispute), status=201)
