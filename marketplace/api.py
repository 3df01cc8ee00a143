"""REST endpoints for users (API.md §4)."""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema

from marketplace.filters import UserFilter
from marketplace.models import User
from marketplace.services import user_airtm_link, user_create_from_api
from marketplace.user_serializers import AirtmLinkInput, AirtmLinkOutput, UserCreateInput, UserOutput
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.pagination import paginate
from offerhub.api.serializers import validated
from offerhub.filters import rows_filtered
from offerhub.timefmt import iso_timestamp
from payments.balances import Actor
from payments.providers import rail_required
from payments.selectors import api_user_get, api_users, balance_as_api

USERS = ["users"]


def user_as_api(user: User) -> dict:
    balance = balance_as_api(user=user)
    return {
        "id": user.public_id,
        "externalUserId": user.external_user_id,
        "email": user.email,
        "type": user.type,
        "status": user.status,
        "balance": {"available": balance["available"], "reserved": balance["reserved"], "currency": "USD"},
        "airtmLinked": bool(user.airtm_user_id),
        "airtmUserId": user.airtm_user_id or None,
        "airtmLinkedAt": iso_timestamp(user.airtm_linked_at) if user.airtm_linked_at else None,
        "metadata": user.metadata or None,
        "createdAt": iso_timestamp(user.date_joined),
        "updatedAt": iso_timestamp(user.updated_at),
    }


class UserListCreateView(ApiView):
    required_scopes = {"GET": "read", "POST": "write"}

    filter_backends = [DjangoFilterBackend]
    filterset_class = UserFilter
    queryset = User.objects.none()  # for the schema; the rows are the key's own below

    @extend_schema(summary="Users, newest first", tags=USERS, responses=UserOutput(many=True))
    def get(self, request):
        users = rows_filtered(view=self, request=request, rows=api_users(principal=request.auth))
        page = paginate(users, params=request.query_params, id_field="public_id", time_field="date_joined")
        return api_list_response(
            [user_as_api(u) for u in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )

    @extend_schema(
        summary="Create a user, or get the existing one with this externalUserId (200)",
        tags=USERS,
        request=UserCreateInput,
        responses={201: UserOutput, 200: UserOutput},
    )
    def post(self, request):
        data = validated(UserCreateInput, request.data)
        user, created = user_create_from_api(
            external_user_id=data["externalUserId"],
            email=data.get("email"),
            user_type=data["type"],
            metadata=data.get("metadata") or {},
            marketplace_id=request.auth.marketplace_id,
            actor_id=request.auth.key_id,
        )
        return api_response(user_as_api(user), status=201 if created else 200)


class UserDetailView(ApiView):
    @extend_schema(summary="One user", tags=USERS, responses=UserOutput)
    def get(self, request, user_id):
        return api_response(user_as_api(api_user_get(principal=request.auth, public_id=user_id)))


def airtm_link_as_api(user: User) -> dict:
    linked_at = iso_timestamp(user.airtm_linked_at)
    return {
        "userId": user.public_id,
        "airtmUserId": user.airtm_user_id,
        "airtmLinkedAt": linked_at,
        "eligible": True,
        "email": user.airtm_email,
        "airtmEmail": user.airtm_email,  # [C] the SDK's names
        "linkedAt": linked_at,
    }


class UserAirtmLinkView(ApiView):
    required_scope = "write"

    @extend_schema(
        summary="Link the user's Airtm account (checked at Airtm: exists, active, verified)",
        tags=USERS,
        request=AirtmLinkInput,
        responses=AirtmLinkOutput,
    )
    def post(self, request, user_id):
        rail_required("airtm")  # OFFERHUB_PAYMENTS_PROVIDER (payments.providers)
        user = api_user_get(principal=request.auth, public_id=user_id)
        data = validated(AirtmLinkInput, request.data)
        user = user_airtm_link(user=user, email=data["email"], actor=Actor("API_KEY", request.auth.key_id))
        return api_response(airtm_link_as_api(user))
