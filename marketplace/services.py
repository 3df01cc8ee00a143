from django.db import IntegrityError, transaction

from marketplace.models import User
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from offerhub.services import audit_record, event_publish
from payments.wallets import wallet_ensure


class UserEmailTaken(ServiceError):
    """Another user already has this e-mail address."""

    def __init__(self, email: str | None):
        super().__init__("USER_ALREADY_EXISTS", "Another user already has this e-mail address", field="email")


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


def user_create_from_api(
    *, external_user_id: str, email: str | None, user_type: str, metadata: dict, marketplace_id: str, actor_id: str
) -> tuple[User, bool]:
    """Idempotent by externalUserId: an existing user comes back unchanged. Starts its wallet."""
    tenant_users = User.objects.filter(marketplace_id=marketplace_id)
    existing = tenant_users.filter(external_user_id=external_user_id).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            user = User(
                external_user_id=external_user_id,
                email=email.lower() if email else None,
                display_name=(email.split("@")[0] if email else external_user_id)[:100],
                type=user_type,
                metadata=metadata,
                marketplace_id=marketplace_id,
            )
            user.set_unusable_password()
            user.save()
            audit_record(
                action="user.created",
                resource_type="User",
                resource_id=user.public_id,
                actor_type=AuditLog.ActorType.API_KEY,
                actor_id=actor_id,
                payload_after={"externalUserId": external_user_id, "email": email, "type": user_type},
                user_id=user.public_id,
                marketplace_id=marketplace_id,
            )
            event_publish(
                type="user.created",
                aggregate_type="User",
                aggregate_id=user.public_id,
                payload={
                    "userId": user.public_id,
                    "externalUserId": external_user_id,
                    "email": email,
                    "type": user_type,
                    "status": user.status,
                },
                user_id=user.public_id,
                marketplace_id=marketplace_id,
            )
            wallet_ensure(user=user)
    except IntegrityError:  # the same externalUserId was created concurrently, or the e-mail is taken
        existing = tenant_users.filter(external_user_id=external_user_id).first()
        if existing is None:
            raise UserEmailTaken(email) from None
        return existing, False
    return user, True
