from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.models import User, VisitorSession, handles_random, unique_violated, user_insert
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from offerhub.services import audit_record, event_publish
from offerhub.timefmt import iso_timestamp
from payments.airtm import AirtmClient
from payments.balances import Actor
from payments.wallets import wallet_ensure


class UserEmailTaken(ServiceError):
    """Another user already has this e-mail address."""

    def __init__(self, email: str | None):
        super().__init__("USER_ALREADY_EXISTS", "Another user already has this e-mail address", field="email")


@transaction.atomic
def user_sign_up(*, email: str, display_name: str, password: str) -> User:
    """Create a member from the web sign-up form, with its audit row and `user.created` event.
    The form checked the e-mail is free; a sign-up with the same e-mail at the same moment is
    refused here (UserEmailTaken), a handle taken meanwhile is retried (user_insert)."""
    try:
        user = User.objects.create_user(email=email, password=password, display_name=display_name)
    except IntegrityError as error:
        if unique_violated(error) != "email":
            raise
        raise UserEmailTaken(email) from None
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
    *,
    external_user_id: str,
    email: str | None,
    user_type: str,
    metadata: dict,
    marketplace_id: str,
    actor_id: str,
    handles: Iterable[str] | None = None,
) -> tuple[User, bool]:
    """Idempotent by externalUserId: an existing user comes back unchanged. Starts its wallet.
    `handles`: the handles to try, first free one wins (random tails by default, models.handles_random)."""
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
            user_insert(user, handles=handles if handles is not None else handles_random(user.display_name))
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
    except IntegrityError as error:  # the same externalUserId was created concurrently, or the e-mail is taken
        existing = tenant_users.filter(external_user_id=external_user_id).first()
        if existing is not None:
            return existing, False
        if unique_violated(error) != "email":
            raise
        raise UserEmailTaken(email) from None
    return user, True


def _airtm_invalid(reason: str, message: str) -> ServiceError:
    return ServiceError("AIRTM_USER_INVALID", message, field="email", details={"reason": reason})


def user_airtm_link(*, user: User, email: str, actor: Actor, airtm: AirtmClient | None = None) -> User:
    """Link `user` to the Airtm account with this e-mail, checked at Airtm first (API.md §4).

    Idempotent: the same account again changes nothing and asks Airtm nothing. The look-up runs
    before the row lock (no lock held across a slow HTTP call); the row is then locked and
    re-checked, so two concurrent links of different accounts cannot both win.
    """
    email = email.strip().lower()
    if user.airtm_user_id and user.airtm_email == email:
        return user
    if user.airtm_user_id:
        raise _already_linked(user)
    try:
        account = (airtm or AirtmClient()).user_by_email(email)
    except ServiceError as error:
        if error.code == "AIRTM_USER_INVALID":
            raise _airtm_invalid("USER_NOT_FOUND", "No Airtm account uses this e-mail address") from error
        raise  # provider failures (502/503/504) pass through
    if not account.active:
        raise _airtm_invalid("USER_INACTIVE", "This Airtm account is not active")
    if settings.OFFERHUB_AIRTM_REQUIRE_VERIFIED and not account.is_verified:
        raise _airtm_invalid("USER_NOT_VERIFIED", "Verify your identity at Airtm first, then link the account")
    with transaction.atomic():
        locked = User.objects.select_for_update(of=("self",)).get(pk=user.pk)
        if locked.airtm_user_id == account.id:
            return locked
        if locked.airtm_user_id:
            raise _already_linked(locked)
        locked.airtm_user_id = account.id
        locked.airtm_email = email
        locked.airtm_linked_at = timezone.now()
        locked.save(update_fields=["airtm_user_id", "airtm_email", "airtm_linked_at", "updated_at"])
        linked_at = iso_timestamp(locked.airtm_linked_at)
        audit_record(
            action="user.airtm_linked",
            resource_type="User",
            resource_id=locked.public_id,
            actor_type=actor.type,
            actor_id=actor.id,
            payload_before={"airtmUserId": None},
            payload_after={"airtmUserId": account.id, "airtmEmail": email, "linkedAt": linked_at},
            user_id=locked.public_id,
            marketplace_id=locked.marketplace_id,
        )
        event_publish(
            type="user.airtm_linked",
            aggregate_type="User",
            aggregate_id=locked.public_id,
            payload={"userId": locked.public_id, "airtmUserId": account.id, "linkedAt": linked_at},
            user_id=locked.public_id,
            marketplace_id=locked.marketplace_id,
        )
    return locked


def _already_linked(user: User) -> ServiceError:
    return ServiceError(
        "AIRTM_USER_ALREADY_LINKED",
        "Another Airtm account is already linked to this user",
        field="email",
        details={"userId": user.public_id},
    )


@transaction.atomic
def user_sessions_end(*, user: User, actor: User) -> int:
    """Sign the member out everywhere (support: a lost phone, a shared computer): every session
    that names them is deleted, and audited. Returns how many there were."""
    ended, _ = VisitorSession.objects.filter(member=user).delete()
    audit_record(
        action="user.sessions_ended",
        resource_type="User",
        resource_id=user.public_id,
        actor_type=AuditLog.ActorType.SUPPORT,
        actor_id=actor.public_id,
        payload_after={"sessions": ended},
        user_id=user.public_id,
    )
    return ended
