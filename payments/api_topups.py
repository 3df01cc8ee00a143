"""REST endpoints for top-ups through Airtm (API.md §7). Thin: payments.topups does the work."""

import logging

from django.http import HttpResponseRedirect
from drf_spectacular.utils import OpenApiResponse, extend_schema

from offerhub.api.base import ApiView, PublicApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.pagination import paginate
from offerhub.api.ratelimit import rate_limit_hit
from offerhub.api.serializers import validated
from offerhub.errors import ServiceError
from payments.models import Topup
from payments.providers import AIRTM, rail_required
from payments.selectors import api_user_get, topup_as_api, user_topups
from payments.serializers import (
    EmptyInput,
    TopupCallbackQuery,
    TopupCreateInput,
    TopupListQuery,
    TopupOutput,
    TopupOwnerQuery,
)
from payments.topups import topup_cancel, topup_create, topup_page_url, topup_refresh

logger = logging.getLogger(__name__)

TOPUPS_PER_MINUTE = 10  # per user (API.md §1.8)
TOPUPS = ["topups"]


def _owner(query: dict) -> str:
    return query.get("user_id") or query.get("userId") or ""


class TopupListCreateView(ApiView):
    required_scopes = {"GET": "read", "POST": "write"}
    atomic_handler = False  # the row commits before Airtm is called; retries dedupe on the Idempotency-Key

    @extend_schema(
        summary="Top-ups, newest first",
        tags=TOPUPS,
        parameters=[TopupListQuery],
        responses=TopupOutput(many=True),
    )
    def get(self, request):
        query = validated(TopupListQuery, request.query_params)
        rows = user_topups(principal=request.auth)
        if _owner(query):
            rows = rows.filter(user=api_user_get(principal=request.auth, public_id=_owner(query)))
        page = paginate(rows, params=query, id_field="public_id")
        return api_list_response(
            [topup_as_api(t) for t in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )

    @extend_schema(
        summary="Add funds through Airtm: answers Airtm's checkout URL (confirmationUri)",
        tags=TOPUPS,
        request=TopupCreateInput,
        responses={201: TopupOutput},
    )
    def post(self, request):
        rail_required(AIRTM)  # OFFERHUB_PAYMENTS_PROVIDER=crypto: no top-ups here (payments.providers)
        data = validated(TopupCreateInput, request.data)
        user = api_user_get(principal=request.auth, public_id=data["user_id"])
        limit = rate_limit_hit(bucket=f"topups:{user.public_id}", limit=TOPUPS_PER_MINUTE, window=60)
        if limit.exceeded:
            raise ServiceError(
                "RATE_LIMITED",
                f"At most {TOPUPS_PER_MINUTE} top-ups a minute per user",
                details={"limit": limit.limit, "windowSeconds": limit.window, "retryAfter": limit.retry_after},
                headers={"Retry-After": str(limit.retry_after)},
            )
        topup = topup_create(
            user=user,
            amount=data["amount"],
            description=data.get("description", ""),
            return_url=data.get("return_url", ""),
            cancel_url=data.get("cancel_url", ""),
            metadata=data.get("metadata") or {},
            principal_id=request.auth.key_id,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            actor_type="API_KEY",
            actor_id=request.auth.key_id,
        )
        return api_response(topup_as_api(topup), status=201, mirror=True)


def _topup_or_404(request, topup_id) -> Topup:
    query = validated(TopupOwnerQuery, request.query_params)
    rows = user_topups(principal=request.auth).filter(public_id=topup_id)
    if _owner(query):
        rows = rows.filter(user__public_id=_owner(query))
    topup = rows.first()
    if topup is None:
        raise ServiceError("TOPUP_NOT_FOUND", f"Top-up {topup_id} not found")
    return topup


class TopupDetailView(ApiView):
    @extend_schema(
        summary="One top-up (optional user_id must own it)",
        tags=TOPUPS,
        parameters=[TopupOwnerQuery],
        responses=TopupOutput,
    )
    def get(self, request, topup_id):
        return api_response(topup_as_api(_topup_or_404(request, topup_id)), mirror=True)


class TopupRefreshView(ApiView):
    required_scope = "read"
    idempotency_exempt = True
    atomic_handler = False

    @extend_schema(
        summary="Re-read the payin at Airtm and apply any new status",
        tags=TOPUPS,
        request=None,
        parameters=[TopupOwnerQuery],
        responses=TopupOutput,
    )
    def post(self, request, topup_id):
        validated(EmptyInput, request.data)
        topup = topup_refresh(topup=_topup_or_404(request, topup_id))
        return api_response(topup_as_api(topup), mirror=True)


class TopupCancelView(ApiView):
    required_scope = "write"
    atomic_handler = False  # Airtm is called (DELETE) before the top-up is locked

    @extend_schema(
        summary="Cancel a top-up awaiting the member's confirmation (else 409 INVALID_STATE)",
        tags=TOPUPS,
        request=None,
        parameters=[TopupOwnerQuery],
        responses=TopupOutput,
    )
    def post(self, request, topup_id):
        validated(EmptyInput, request.data)
        topup = topup_cancel(topup=_topup_or_404(request, topup_id), actor_type="API_KEY", actor_id=request.auth.key_id)
        return api_response(topup_as_api(topup), mirror=True)


class TopupCallbackView(PublicApiView):
    """Airtm's browser redirect after the checkout. The query is never trusted: the payin is read
    at Airtm first; nothing is credited here that a GET at Airtm did not confirm."""

    atomic_handler = False

    @extend_schema(
        summary="Airtm's redirect back: refreshes, then 302 to the return or cancel URL",
        tags=TOPUPS,
        parameters=[TopupCallbackQuery],
        responses={302: OpenApiResponse(description="redirect to the top-up's return_url or cancel_url")},
    )
    def get(self, request, topup_id):
        validated(TopupCallbackQuery, request.query_params)
        topup = Topup.objects.select_related("user").filter(public_id=topup_id).first()
        if topup is None:
            return HttpResponseRedirect("/wallet/")
        try:
            topup = topup_refresh(topup=topup)  # bounded by the per-IP rate limit of public requests
        except ServiceError as error:  # Airtm unreachable: the page the member lands on keeps checking
            logger.warning("top-up %s callback: refresh failed: %s", topup.public_id, error.code)
        going_on = topup.status in (Topup.Status.SUCCEEDED, Topup.Status.PROCESSING)
        return HttpResponseRedirect((topup.return_url if going_on else topup.cancel_url) or topup_page_url(topup))
