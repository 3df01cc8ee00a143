"""REST endpoints for users (API.md §4)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email

from marketplace.models import User
from marketplace.services import UserEmailTaken, user_create_from_api
from offerhub.api.base import ApiView
from offerhub.api.envelope import api_list_response, api_response
from offerhub.api.errors import validation_error
from offerhub.api.pagination import paginate
from offerhub.api.parsing import require_fields
from offerhub.errors import ServiceError
from offerhub.timefmt import iso_timestamp
from payments.selectors import api_user_get, api_users, balance_as_api


def user_as_api(user: User) -> dict:
    balance = balance_as_api(user=user)
    return {
        "id": user.public_id,
        "externalUserId": user.external_user_id,
        "email": user.email,
        "type": user.type,
        "status": user.status,
        "balance": {"available": balance["available"], "reserved": balance["reserved"], "currency": "USD"},
        "airtmLinked": False,
        "airtmUserId": None,
        "airtmLinkedAt": None,
        "metadata": user.metadata or None,
        "createdAt": iso_timestamp(user.date_joined),
        "updatedAt": iso_timestamp(user.updated_at),
    }


class UserListCreateView(ApiView):
    required_scopes = {"GET": "read", "POST": "write"}

    def get(self, request):
        users = api_users(principal=request.auth)
        params = request.query_params
        for field, choices in (("type", User.Type.values), ("status", User.Status.values)):
            if params.get(field):
                value = params[field].upper()
                if value not in choices:
                    raise validation_error([(field, f"must be one of {', '.join(choices)}")])
                users = users.filter(**{field: value})
        if params.get("externalUserId"):
            users = users.filter(external_user_id=params["externalUserId"])
        page = paginate(users, params=params, id_field="public_id", time_field="date_joined")
        return api_list_response(
            [user_as_api(u) for u in page.items], has_more=page.has_more, next_cursor=page.next_cursor
        )

    def post(self, request):
        data = require_fields(request.data, {"externalUserId", "external_user_id", "email", "type", "metadata"})
        external_id = data.get("externalUserId") or data.get("external_user_id")
        problems = []
        if external_id in (None, ""):
            problems.append(("externalUserId", "is required"))
        elif not isinstance(external_id, str):
            problems.append(("externalUserId", "must be a string"))
        elif len(external_id) > 255:
            problems.append(("externalUserId", "must be at most 255 characters"))
        email = data.get("email")
        if email is not None:
            try:
                validate_email(email)
            except (DjangoValidationError, TypeError):
                problems.append(("email", "is not a valid e-mail address"))
        user_type = str(data.get("type", "BOTH")).upper()
        if user_type not in User.Type.values:
            problems.append(("type", "must be BUYER, SELLER or BOTH"))
        metadata = data.get("metadata", {})
        if not isinstance(metadata, dict):
            problems.append(("metadata", "must be an object"))
        if problems:
            raise validation_error(problems)
        try:
            user, created = user_create_from_api(
                external_user_id=external_id,
                email=email,
                user_type=user_type,
                metadata=metadata,
                marketplace_id=request.auth.marketplace_id,
                actor_id=request.auth.key_id,
            )
        except UserEmailTaken:
            raise ServiceError(
                "USER_ALREADY_EXISTS", "Another user already has this e-mail address", details={"field": "email"}
            ) from None
        return api_response(user_as_api(user), status=201 if created else 200)


class UserDetailView(ApiView):
    def get(self, request, user_id):
        return api_response(user_as_api(api_user_get(principal=request.auth, public_id=user_id)))
