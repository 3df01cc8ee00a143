"""Reviews and seller profiles: the buyer rates a finished order once, the seller replies once,
support hides a review with a reason (services); the ratings and profiles members read (selectors).

Averages and counts are aggregates over the visible review rows, computed when read.
"""

import io
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from PIL import Image, ImageOps

from marketplace.listings import listing_image_check
from marketplace.models import Listing, Order, Review, User
from offerhub.errors import ServiceError
from offerhub.files import file_delete_on_rollback
from offerhub.models import AuditLog
from offerhub.services import audit_record

S = Order.Status
# A buyer reviews an order once the money went somewhere for good: released to the seller
# (milestone by milestone or at once), or settled by support in a dispute (released, refunded or split).
REVIEWABLE_STATUSES = (S.RELEASED, S.REFUNDED, S.CLOSED)
HIDE_REASON_MAX_LENGTH = 255
ABOUT_MAX_LENGTH = User._meta.get_field("about").max_length
AVATAR_SIDE = 256
REVIEWS_ON_A_PAGE = 20


def order_is_reviewable(order: Order) -> bool:
    """Finished with money moved: released, refunded or closed, but not canceled before payment."""
    return order.status in REVIEWABLE_STATUSES and order.outcome != Order.Outcome.CANCELED


def _text(value: str, *, field: str, max_length: int, required: bool) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ServiceError("VALIDATION_ERROR", "Write a few words.", field=field)
    if len(value) > max_length:
        raise ServiceError("VALIDATION_ERROR", f"Keep it under {max_length:,} characters.", field=field)
    return value


def _review_audit(*, review: Review, action: str, actor_type: str, actor_id: str, before=None, after=None) -> None:
    audit_record(
        action=action,
        resource_type="Review",
        resource_id=review.public_id,
        actor_type=actor_type,
        actor_id=actor_id,
        payload_before=before,
        payload_after=after,
        user_id=review.seller.public_id,
    )


@transaction.atomic
def review_create(*, order: Order, buyer: User, rating: int, body: str) -> Review:
    """The order's buyer rates it (1-5) with a few words, once, after it is finished."""
    order = Order.objects.select_related("buyer", "seller").get(pk=order.pk)  # its status as of now
    if not order.is_buyer(buyer):
        raise ServiceError("FORBIDDEN", "Only the buyer of this order can review it.")
    if not order_is_reviewable(order):
        raise ServiceError("INVALID_STATE", "You can review this order once the seller has been paid.")
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise ServiceError("VALIDATION_ERROR", "Choose from 1 to 5 stars.", field="rating")
    body = _text(body, field="body", max_length=Review.BODY_MAX_LENGTH, required=True)
    try:
        with transaction.atomic():
            review = Review.objects.create(
                order=order, listing_id=order.listing_id, seller=order.seller, buyer=buyer, rating=rating, body=body
            )
    except IntegrityError:  # the one-per-order constraint: reviewed already (maybe in another tab)
        raise ServiceError("ALREADY_REVIEWED", "You have already reviewed this order.") from None
    _review_audit(
        review=review,
        action="review.created",
        actor_type=AuditLog.ActorType.USER,
        actor_id=buyer.public_id,
        after={"order": order.public_id, "rating": rating},
    )
    return review


@transaction.atomic
def review_reply(*, review: Review, seller: User, reply: str) -> Review:
    """The reviewed seller answers, once."""
    review = Review.objects.select_for_update(of=("self",)).select_related("seller").get(pk=review.pk)
    if review.seller_id != seller.pk:
        raise ServiceError("FORBIDDEN", "Only the seller of this order can reply to its review.")
    if review.hidden:  # support took it out of sight: nothing is published under it
        raise ServiceError("INVALID_STATE", "Support has hidden this review: it cannot be replied to.")
    if review.reply:
        raise ServiceError("ALREADY_REPLIED", "You have already replied to this review.")
    review.reply = _text(reply, field="reply", max_length=Review.REPLY_MAX_LENGTH, required=True)
    review.replied_at = timezone.now()
    review.save(update_fields=["reply", "replied_at", "updated_at"])
    _review_audit(review=review, action="review.replied", actor_type=AuditLog.ActorType.USER, actor_id=seller.public_id)
    return review


@transaction.atomic
def review_hide(*, review: Review, actor: User, reason: str) -> Review:
    """Support takes a review out of sight (and out of every average), saying why; audited."""
    if not actor.is_staff:
        raise ServiceError("FORBIDDEN", "Only support can hide a review.")
    reason = _text(reason, field="reason", max_length=HIDE_REASON_MAX_LENGTH, required=True)
    review = Review.objects.select_for_update(of=("self",)).select_related("seller").get(pk=review.pk)
    if review.hidden:
        return review  # hidden already: nothing changes, nothing is recorded twice
    review.hidden, review.hidden_reason, review.hidden_at = True, reason, timezone.now()
    review.save(update_fields=["hidden", "hidden_reason", "hidden_at", "updated_at"])
    _review_audit(
        review=review,
        action="review.hidden",
        actor_type=AuditLog.ActorType.SUPPORT,
        actor_id=actor.public_id,
        before={"hidden": False},
        after={"hidden": True, "reason": reason},
    )
    return review


# --- Profiles ------------------------------------------------------------------------------


def _avatar_square(upload: UploadedFile) -> ContentFile:
    """The upload, checked as a listing image is, cropped to a centred square of AVATAR_SIDE pixels."""
    try:
        listing_image_check(upload)
    except ServiceError as error:
        raise ServiceError(error.code, error.message, field="avatar") from None
    with Image.open(upload) as image:
        square = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (AVATAR_SIDE, AVATAR_SIDE))
    out = io.BytesIO()
    square.save(out, format="JPEG", quality=85)
    return ContentFile(out.getvalue(), name="avatar.jpg")


@transaction.atomic
def user_profile_update(
    *, user: User, about: str, avatar: UploadedFile | None = None, avatar_remove: bool = False
) -> User:
    """The member's own "about" and picture, as shown on their seller profile."""
    about = _text(about, field="about", max_length=ABOUT_MAX_LENGTH, required=False)
    picture = _avatar_square(avatar) if avatar is not None else None
    user = User.objects.select_for_update(of=("self",)).get(pk=user.pk)
    before = {"about": user.about, "avatar": bool(user.avatar)}
    old_avatar = user.avatar.name if user.avatar and (picture is not None or avatar_remove) else ""
    user.about = about
    if picture is not None:
        user.avatar.save(picture.name, picture, save=False)
        file_delete_on_rollback(storage=user.avatar.storage, name=user.avatar.name)  # no orphan if undone
    elif avatar_remove:
        user.avatar = ""
    user.save(update_fields=["about", "avatar", "updated_at"])
    if old_avatar:
        storage = User._meta.get_field("avatar").storage
        transaction.on_commit(lambda: storage.delete(old_avatar), robust=True)
    audit_record(
        action="user.profile_updated",
        resource_type="User",
        resource_id=user.public_id,
        actor_type=AuditLog.ActorType.USER,
        actor_id=user.public_id,
        payload_before=before,
        payload_after={"about": user.about, "avatar": bool(user.avatar)},
        user_id=user.public_id,
    )
    return user


# --- Selectors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rating:
    """An average of visible reviews, rounded to one decimal, and how many there are."""

    average: Decimal | None
    count: int

    @classmethod
    def of(cls, average, count: int) -> "Rating":
        if not count or average is None:
            return cls(None, 0)
        return cls(Decimal(str(average)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP), count)

    @property
    def stars(self) -> list[str]:
        """Five Bootstrap icon names: full, half and empty stars for the average."""
        value = self.average or Decimal(0)
        icons = []
        for n in range(1, 6):
            if value >= n - Decimal("0.25"):
                icons.append("star-fill")
            elif value >= n - Decimal("0.75"):
                icons.append("star-half")
            else:
                icons.append("star")
        return icons


def _count_of(queryset: QuerySet, outer: str) -> Subquery:
    counted = queryset.filter(**{outer: OuterRef("pk")}).order_by().values(outer).annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _average_of(queryset: QuerySet, outer: str) -> Subquery:
    return Subquery(
        queryset.filter(**{outer: OuterRef("pk")}).order_by().values(outer).annotate(a=Avg("rating")).values("a")
    )


def completed_orders() -> QuerySet:
    """Orders the seller was paid for: released (a closed order remembers it as its outcome)."""
    return Order.objects.filter(Q(status=S.RELEASED) | Q(status=S.CLOSED, outcome=Order.Outcome.RELEASED))


def sellers_with_stats(users: QuerySet) -> QuerySet:
    """Members with their rating and completed sales as columns of the same row (one query)."""
    visible = Review.objects.visible()
    return users.annotate(
        rating_average=_average_of(visible, "seller"),
        rating_count=_count_of(visible, "seller"),
        completed_count=_count_of(completed_orders(), "seller"),
    )


def seller_rating(seller: User) -> Rating:
    return Rating.of(getattr(seller, "rating_average", None), getattr(seller, "rating_count", 0))


def seller_by_handle(*, handle: str) -> User | None:
    """A member in good standing, with their stats; None for anyone else (the page answers 404)."""
    return (
        sellers_with_stats(User.objects.filter(is_active=True, status=User.Status.ACTIVE)).filter(handle=handle).first()
    )


def listing_page_annotations() -> dict:
    """The listing's and its seller's ratings and the seller's completed sales, as columns of the
    listing page's own query (listing_for_buyers(annotations=...)): no query of their own."""
    visible = Review.objects.visible()

    def per_seller(queryset, column):
        return Subquery(
            queryset.filter(seller=OuterRef("seller_id")).order_by().values("seller").annotate(v=column).values("v")
        )

    return {
        "rating_average": _average_of(visible, "listing"),
        "rating_count": _count_of(visible, "listing"),
        "seller_rating_average": per_seller(visible, Avg("rating")),
        "seller_rating_count": Coalesce(per_seller(visible, Count("*")), Value(0)),
        "seller_completed_count": Coalesce(per_seller(completed_orders(), Count("*")), Value(0)),
    }


def listing_rating(listing: Listing) -> Rating:
    """The listing's rating: from listing_page_annotations' columns when the listing has them."""
    if hasattr(listing, "rating_count"):
        return Rating.of(listing.rating_average, listing.rating_count)
    totals = Review.objects.visible().filter(listing=listing).aggregate(average=Avg("rating"), count=Count("*"))
    return Rating.of(totals["average"], totals["count"])


def listing_seller(listing: Listing) -> User:
    """The listing's seller (joined) with the stats the page read as the listing's columns."""
    seller = listing.seller
    seller.rating_average = listing.seller_rating_average
    seller.rating_count = listing.seller_rating_count
    seller.completed_count = listing.seller_completed_count
    return seller


def reviews_of_listing(*, listing: Listing, limit: int = 10) -> list[Review]:
    return list(Review.objects.visible().filter(listing=listing).select_related("buyer")[:limit])


def reviews_of_seller(*, seller: User, limit: int = REVIEWS_ON_A_PAGE) -> list[Review]:
    """The seller's latest visible reviews, with the buyer and the listing each was about (one query)."""
    return list(
        Review.objects.visible()
        .filter(seller=seller)
        .select_related("buyer", "listing")
        .only(
            "public_id",
            "rating",
            "body",
            "reply",
            "replied_at",
            "created_at",
            "seller_id",
            "buyer__display_name",
            "buyer__handle",
            "buyer__avatar",
            "buyer__public_id",
            "listing__public_id",
            "listing__title",
            "listing__status",
        )[:limit]
    )


def review_of_order(order: Order) -> Review | None:
    return Review.objects.select_related("buyer").filter(order=order).first()
