"""Listings: the writes sellers make (services) and the reads buyers and sellers share (selectors).

Prices travel as `Decimal` dollars with two places at the edges and are stored as whole cents.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Case, CharField, F, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.db.models.expressions import RawSQL
from django.template import loader
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from PIL import Image, UnidentifiedImageError

from marketplace.models import Category, Listing, ListingImage, ListingMilestone, Review, User
from offerhub.errors import ServiceError
from offerhub.files import file_delete_on_rollback
from offerhub.lru import LruCache
from offerhub.models import AuditLog
from offerhub.services import audit_record

MAX_IMAGES = 8
MAX_MILESTONES = 10
# Pillow's format name -> the extension the stored file gets.
IMAGE_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# The longest side Pillow is asked to decode; larger files are refused before decoding them.
MAX_IMAGE_SIDE = 10_000


class SORT:
    NEWEST = "newest"
    PRICE_LOW = "price_asc"
    PRICE_HIGH = "price_desc"
    RELEVANCE = "relevance"


SORT_CHOICES = [
    (SORT.RELEVANCE, "Best match"),
    (SORT.NEWEST, "Newest"),
    (SORT.PRICE_LOW, "Price: low to high"),
    (SORT.PRICE_HIGH, "Price: high to low"),
]


@dataclass(frozen=True)
class MilestoneSpec:
    title: str
    amount: Decimal


# --- Money -------------------------------------------------------------------------


def dollars_to_cents(amount: Decimal) -> int:
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ServiceError("VALIDATION_ERROR", "Use at most two decimals, such as 12.50.", field="price")
    return int(cents)


def price_limits() -> tuple[Decimal, Decimal]:
    """A listing is bought as one order, so its price stays within the order limits."""
    limits = settings.OFFERHUB_LIMITS["order"]
    return Decimal(limits["min"]), Decimal(limits["max"])


# --- Images ------------------------------------------------------------------------


def size_label(size: int) -> str:
    """5242880 -> "5 MB", 10240 -> "10 KB"."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MB"
    return f"{size / 1024:g} KB"


def listing_image_check(upload: UploadedFile) -> str:
    """Refuse anything but a real JPEG, PNG or WebP within the size limit; return its extension.

    The content is decoded: a renamed text file or a truncated image fails here whatever its name says.
    """
    max_bytes = settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES
    name = upload.name or "the image"
    if upload.size > max_bytes:
        raise ServiceError("VALIDATION_ERROR", f"“{name}” is larger than {size_label(max_bytes)}.", field="images")
    try:
        upload.seek(0)
        with Image.open(upload) as image:
            image_format = image.format
            if max(image.size) > MAX_IMAGE_SIDE:
                raise ServiceError(
                    "VALIDATION_ERROR", f"“{name}” is larger than {MAX_IMAGE_SIDE:,} pixels on a side.", field="images"
                )
            image.verify()
    except Image.DecompressionBombError:
        raise ServiceError(
            "VALIDATION_ERROR", f"“{name}” has too many pixels; use a smaller image.", field="images"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ServiceError(
            "VALIDATION_ERROR", f"“{name}” is not a JPEG, PNG or WebP image we can read.", field="images"
        ) from None
    finally:
        upload.seek(0)
    if image_format not in IMAGE_FORMATS:
        raise ServiceError(
            "VALIDATION_ERROR", f"“{name}” is a {image_format} image; use JPEG, PNG or WebP.", field="images"
        )
    return IMAGE_FORMATS[image_format]


def _images_add(listing: Listing, uploads: Sequence[tuple[UploadedFile, str]], first_position: int) -> None:
    """Store uploads already checked by listing_image_check, given with their extensions."""
    for offset, (upload, extension) in enumerate(uploads):
        image = ListingImage(listing=listing, position=first_position + offset)
        # Stored through the default storage under a name of ours (listing_image_path).
        image.image.save(f"image.{extension}", upload, save=False)
        file_delete_on_rollback(storage=image.image.storage, name=image.image.name)  # no orphan if undone
        image.save()


def _images_remove(images: Sequence[ListingImage]) -> None:
    names = [image.image.name for image in images]
    storage = ListingImage._meta.get_field("image").storage
    ListingImage.objects.filter(pk__in=[image.pk for image in images]).delete()
    # The files go only once the rows are gone for good.
    transaction.on_commit(lambda: [storage.delete(name) for name in names], robust=True)


# --- Services ----------------------------------------------------------------------


def _validated(
    *, title: str, description: str, price: Decimal, delivery_days: int, milestones: Sequence[MilestoneSpec]
) -> tuple[int, list[tuple[str, int]]]:
    """The service's own checks (the forms make the same ones, for their messages in place)."""
    if not title.strip():
        raise ServiceError("VALIDATION_ERROR", "Give the listing a title.", field="title")
    if not description.strip():
        raise ServiceError("VALIDATION_ERROR", "Describe what the buyer gets.", field="description")
    minimum, maximum = price_limits()
    if not minimum <= price <= maximum:
        raise ServiceError(
            "VALIDATION_ERROR", f"The price must be between ${minimum:,.2f} and ${maximum:,.2f}.", field="price"
        )
    price_cents = dollars_to_cents(price)
    if delivery_days < 1:
        raise ServiceError("VALIDATION_ERROR", "Delivery takes at least one day.", field="delivery_days")
    if len(milestones) > MAX_MILESTONES:
        raise ServiceError(
            "VALIDATION_ERROR", f"A listing has at most {MAX_MILESTONES} milestones.", field="milestones"
        )
    parts = []
    for milestone in milestones:
        if milestone.amount <= 0:
            raise ServiceError(
                "VALIDATION_ERROR",
                f"The milestone “{milestone.title}” needs an amount above $0.00.",
                field="milestones",
            )
        parts.append((milestone.title.strip(), dollars_to_cents(milestone.amount)))
    total = sum(cents for _, cents in parts)
    if parts and total != price_cents:
        raise ServiceError(
            "VALIDATION_ERROR",
            f"The milestone amounts add up to ${Decimal(total).scaleb(-2):,.2f}; "
            f"they must add up to the price, ${price:,.2f}.",
            field="milestones",
        )
    return price_cents, parts


def _snapshot(listing: Listing) -> dict:
    return {
        "title": listing.title,
        "priceCents": listing.price_cents,
        "category": listing.category.slug,
        "deliveryDays": listing.delivery_days,
        "status": listing.status,
    }


def _audit(*, listing: Listing, action: str, actor: User, before: dict | None = None, after: dict | None = None):
    audit_record(
        action=action,
        resource_type="Listing",
        resource_id=listing.public_id,
        actor_type=AuditLog.ActorType.SUPPORT
        if actor.is_staff and actor != listing.seller
        else AuditLog.ActorType.USER,
        actor_id=actor.public_id,
        payload_before=before,
        payload_after=after,
        user_id=listing.seller.public_id,
    )


def _milestones_replace(listing: Listing, parts: list[tuple[str, int]]) -> None:
    listing.milestones.all().delete()
    ListingMilestone.objects.bulk_create(
        ListingMilestone(listing=listing, position=position, title=title, amount_cents=cents)
        for position, (title, cents) in enumerate(parts)
    )


@transaction.atomic
def listing_create(
    *,
    seller: User,
    title: str,
    description: str,
    price: Decimal,
    category: Category,
    delivery_days: int,
    delivery_terms: str = "",
    milestones: Sequence[MilestoneSpec] = (),
    images: Sequence[UploadedFile] = (),
) -> Listing:
    """Publish a listing at once (active), with its milestones and images."""
    price_cents, parts = _validated(
        title=title, description=description, price=price, delivery_days=delivery_days, milestones=milestones
    )
    if len(images) > MAX_IMAGES:
        raise ServiceError("VALIDATION_ERROR", f"A listing has at most {MAX_IMAGES} images.", field="images")
    # Every image is checked before anything is written, so a refused one leaves no stored file behind.
    checked_images = [(upload, listing_image_check(upload)) for upload in images]
    listing = Listing.objects.create(
        seller=seller,
        category=category,
        title=title.strip(),
        description=description.strip(),
        price_cents=price_cents,
        delivery_days=delivery_days,
        delivery_terms=delivery_terms.strip(),
    )
    _milestones_replace(listing, parts)
    _images_add(listing, checked_images, first_position=0)
    _audit(listing=listing, action="listing.created", actor=seller, after=_snapshot(listing))
    return listing


@transaction.atomic
def listing_update(
    *,
    listing: Listing,
    actor: User,
    title: str,
    description: str,
    price: Decimal,
    category: Category,
    delivery_days: int,
    delivery_terms: str = "",
    milestones: Sequence[MilestoneSpec] = (),
    images_added: Sequence[UploadedFile] = (),
    images_removed: Sequence[ListingImage] = (),
) -> Listing:
    """Change every field; the milestones are replaced as a set, so their sum is checked against the new price."""
    listing = Listing.objects.select_for_update(of=("self",)).select_related("seller", "category").get(pk=listing.pk)
    if listing.status == Listing.Status.DELETED:
        raise ServiceError("INVALID_STATE", "This listing was deleted.")
    price_cents, parts = _validated(
        title=title, description=description, price=price, delivery_days=delivery_days, milestones=milestones
    )
    kept = [image for image in listing.images.all() if image.pk not in {removed.pk for removed in images_removed}]
    if len(kept) + len(images_added) > MAX_IMAGES:
        raise ServiceError(
            "VALIDATION_ERROR", f"A listing has at most {MAX_IMAGES} images; remove some first.", field="images"
        )
    checked_images = [(upload, listing_image_check(upload)) for upload in images_added]
    before = _snapshot(listing)
    listing.title = title.strip()
    listing.description = description.strip()
    listing.price_cents = price_cents
    listing.category = category
    listing.delivery_days = delivery_days
    listing.delivery_terms = delivery_terms.strip()
    listing.save()
    _milestones_replace(listing, parts)
    _images_remove([image for image in images_removed if image.listing_id == listing.pk])
    for position, image in enumerate(kept):
        if image.position != position:
            image.position = position
            image.save(update_fields=["position"])
    _images_add(listing, checked_images, first_position=len(kept))
    _audit(listing=listing, action="listing.updated", actor=actor, before=before, after=_snapshot(listing))
    return listing


def _status_change(*, listing: Listing, actor: User, allowed_from: set[str], to: str, action: str) -> Listing:
    listing = Listing.objects.select_for_update(of=("self",)).select_related("seller", "category").get(pk=listing.pk)
    if listing.status == to:
        return listing  # pressing the button twice changes nothing
    if listing.status not in allowed_from:
        raise ServiceError(
            "INVALID_STATE", f"A {listing.get_status_display().lower()} listing cannot be changed like this."
        )
    before = _snapshot(listing)
    listing.status = to
    update_fields = ["status", "updated_at"]
    if to == Listing.Status.DELETED:
        listing.deleted_at = timezone.now()
        update_fields.append("deleted_at")
    listing.save(update_fields=update_fields)
    _audit(listing=listing, action=action, actor=actor, before=before, after=_snapshot(listing))
    return listing


@transaction.atomic
def listing_pause(*, listing: Listing, actor: User) -> Listing:
    """Hide the listing from buyers; the seller still sees it and can resume it."""
    return _status_change(
        listing=listing,
        actor=actor,
        allowed_from={Listing.Status.ACTIVE},
        to=Listing.Status.PAUSED,
        action="listing.paused",
    )


@transaction.atomic
def listing_resume(*, listing: Listing, actor: User) -> Listing:
    return _status_change(
        listing=listing,
        actor=actor,
        allowed_from={Listing.Status.PAUSED},
        to=Listing.Status.ACTIVE,
        action="listing.resumed",
    )


@transaction.atomic
def listing_delete(*, listing: Listing, actor: User) -> Listing:
    """A soft delete: the row, its milestones and images stay for the orders that point at it."""
    return _status_change(
        listing=listing,
        actor=actor,
        allowed_from={Listing.Status.ACTIVE, Listing.Status.PAUSED},
        to=Listing.Status.DELETED,
        action="listing.deleted",
    )


# --- Selectors ---------------------------------------------------------------------


def _with_cards(listings: QuerySet) -> QuerySet:
    """What a listing card shows, in a fixed number of queries whatever the page size."""
    return listings.select_related("seller", "category").prefetch_related(
        Prefetch("images", queryset=ListingImage.objects.order_by("position", "id"))
    )


def sort_effective(*, sort: str, query: str) -> str:
    """Relevance when searching and newest otherwise, unless asked; relevance needs a query."""
    if sort not in {value for value, _ in SORT_CHOICES} or (sort == SORT.RELEVANCE and not query):
        return SORT.RELEVANCE if query else SORT.NEWEST
    return sort


def listings_browse(*, query: str = "", category: Category | None = None, sort: str = "") -> QuerySet:
    """Active listings matching the words of `query` (full-text on PostgreSQL), in `category`, sorted."""
    listings = Listing.objects.browsable()
    if category is not None:
        listings = listings.filter(category=category)
    query = " ".join(query.split())
    sort = sort_effective(sort=sort, query=query)
    if query:
        listings = _search(listings, query)
    ordering = {
        SORT.NEWEST: ["-created_at", "-id"],
        SORT.PRICE_LOW: ["price_cents", "-created_at", "-id"],
        SORT.PRICE_HIGH: ["-price_cents", "-created_at", "-id"],
        SORT.RELEVANCE: ["-rank", "-created_at", "-id"],
    }[sort]
    return _with_card_covers(listings).order_by(*ordering)


def _with_card_covers(listings: QuerySet) -> QuerySet:
    """What a card in a grid shows: the seller and category joined, the cover image (the first by
    position) as one column of the listing's row, "name|width|height": one query for the page and
    none for its images. Raw SQL because three Subquery() annotations cost the page a millisecond
    of compiling; it is plain SQL that PostgreSQL and SQLite both run."""
    # No input in it: the two table names are the models' own.
    cover = RawSQL(  # noqa: S611
        f"SELECT image || '|' || width || '|' || height FROM {ListingImage._meta.db_table} "  # noqa: S608
        f"WHERE listing_id = {Listing._meta.db_table}.id ORDER BY position, id LIMIT 1",
        (),
        output_field=CharField(),
    )
    # The listing's visible reviews, "count|average", as one more column (an aggregate, never a stored counter).
    rating = RawSQL(  # noqa: S611
        f"SELECT CAST(COUNT(*) AS TEXT) || '|' || CAST(COALESCE(AVG(rating), 0) AS TEXT) "  # noqa: S608
        f"FROM {Review._meta.db_table} WHERE listing_id = {Listing._meta.db_table}.id AND NOT hidden",
        (),
        output_field=CharField(),
    )
    # Only the columns a card shows: not the description, terms, search vector or the seller's account.
    card_fields = ("public_id", "title", "price_cents", "delivery_days", "seller", "category")
    related = ("seller__display_name", "seller__handle", "category__name", "category__icon", "category__slug")
    return (
        listings.select_related("seller", "category")
        .only(*card_fields, *related)
        .annotate(card_cover=cover, card_rating=rating)
    )


def _card_rating(listing: Listing) -> tuple[int, Decimal | None]:
    """(how many visible reviews, their average to one decimal) from the card_rating column."""
    count, _, average = (getattr(listing, "card_rating", "") or "0|0").partition("|")
    if not int(count):
        return 0, None
    return int(count), Decimal(average).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _card_cover(listing: Listing) -> ListingImage | None:
    if not listing.card_cover:
        return None
    name, width, height = listing.card_cover.rsplit("|", 2)
    return ListingImage(image=name, width=int(width), height=int(height))


# The rendered cards of a grid, per process. The key holds every value the card shows (and the
# language, which formats the price), so a cached card is what rendering would give: an edit of the
# listing, a renamed seller or category or a new cover makes a new key. Bounded, least recently used.
_cards = LruCache(max_entries=2_000)


def listing_cards(listings: Sequence[Listing]) -> list[SafeString]:
    """The HTML of each listing's card (templates/marketplace/listing_card.html), for listings
    from listings_browse (their cover columns annotated)."""
    language = get_language()
    cards = []
    for listing in listings:
        category = listing.category
        key = (
            language,
            listing.public_id,
            listing.title,
            listing.price_cents,
            listing.delivery_days,
            listing.seller.display_name,
            listing.seller.handle,
            category.name if category else None,
            category.icon if category else None,
            listing.card_cover,
            getattr(listing, "card_rating", ""),
        )
        card = _cards.get(key)
        if card is None:
            cover = _card_cover(listing)
            review_count, rating = _card_rating(listing)
            card = SafeString(
                loader.get_template("marketplace/listing_card.html").render(
                    {"listing": listing, "cover": cover, "review_count": review_count, "rating": rating}
                )
            )
            _cards.put(key, card)
        cards.append(card)
    return cards


def _search(listings: QuerySet, query: str) -> QuerySet:
    if connection.vendor == "postgresql":
        # websearch syntax: "exact phrase", -excluded, or; English stemming finds "logos" for "logo".
        search = SearchQuery(query, config="english", search_type="websearch")
        return listings.filter(search_vector=search).annotate(rank=SearchRank(F("search_vector"), search))
    # SQLite (embedded mode): every word in the title or the description; title matches rank first.
    for word in query.split():
        listings = listings.filter(Q(title__icontains=word) | Q(description__icontains=word))
    return listings.annotate(
        rank=Case(When(title__icontains=query, then=Value(1)), default=Value(0), output_field=IntegerField())
    )


def listing_for_buyers(
    *, public_id: str, viewer: User | None = None, annotations: dict | None = None
) -> Listing | None:
    """An active listing with everything its page shows; its seller also sees it while paused.
    `annotations`: more columns for the same query (the listing page's ratings)."""
    listing = (
        _with_cards(Listing.objects.exclude(status=Listing.Status.DELETED))
        .prefetch_related("milestones")
        .annotate(**(annotations or {}))
        .filter(public_id=public_id)
        .first()
    )
    if listing is None:
        return None
    if listing.seller_id == getattr(viewer, "pk", None) or listing.is_browsable:
        return listing
    return None


def listings_of_seller(*, seller: User) -> QuerySet:
    """The seller's own listings, paused ones included, newest first."""
    return _with_cards(Listing.objects.owned_by(seller)).order_by("-created_at", "-id")


def listing_owned(*, seller: User, public_id: str) -> Listing | None:
    """The seller's own listing (active or paused), or None: someone else's looks like no listing at all."""
    return (
        Listing.objects.owned_by(seller)
        .select_related("seller", "category")
        .prefetch_related("milestones", Prefetch("images", queryset=ListingImage.objects.order_by("position", "id")))
        .filter(public_id=public_id)
        .first()
    )


def categories_all() -> list[Category]:
    return list(Category.objects.all())
