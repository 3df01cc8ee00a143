from django.db import transaction

from marketplace.models import User
from offerhub.models import AuditLog
from offerhub.services import audit_record, event_publish


@transaction.atomic
def user_sign_up(*, email: str, display_name: str, password: str) -> User:
    """Create a member from the web sign-up form, with its audit row and `user.created` event."""
    user = User.objects.create_user(email=email, password=password, display_name=display_name)
    audit_record(
        action="user.signed_up",
        resource_type="User",
        resource_id=user.public_id,
        actor_type=AuditLog.ActorType.USER,
        actor_id=user.public_id,
        payload_after={"displayName": display_name, "email": email},
        user_id=user.public_id,
    )
    event_publish(
        type="user.created",
        aggregate_type="User",
        aggregate_id=user.public_id,
        payload={"userId": user.public_id, "externalUserId": None, "email": email, "type": "BOTH", "status": "ACTIVE"},
        user_id=user.public_id,
    )
    return user
