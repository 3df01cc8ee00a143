from collections.abc import Iterable, Iterator
from decimal import Decimal
from itertools import islice

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.search import SearchVectorField
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import IntegrityError, connection, models, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.text import slugify
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from offerhub.files import private_storage
from offerhub.ids import new_user_id, public_id, random_alnum


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An e-mail address is required")
        email = self.normalize_email(email).lower()
        extra_fields.setdefault("display_name", email.split("@")[0])
        user = self.model(email=email, **extra_fields)
        user.set_password(password)
        if user.handle:
            user.save(using=self._db)
        else:
            user_insert(user, handles=handles_free(user.display_name))
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)


HANDLE_MAX_LENGTH = 40


def handle_base(name: str) -> str:
    """ "Sam Seller" -> "sam-seller": the start of a profile address (/sellers/<handle>/)."""
    return slugify(name)[: HANDLE_MAX_LENGTH - 5].strip("-") or "member"


def handle_free(name: str) -> str:
    """A handle no member has yet, from `name`: "sam-seller", else "sam-seller-2", "-3"... (one query)."""
    base = handle_base(name)
    taken = set(User.objects.filter(handle__startswith=base).values_list("handle", flat=True))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


def handles_free(name: str) -> Iterator[str]:
    """handle_free(name), looked up again for each try: a retry sees the handle taken meanwhile."""
    while True:
        yield handle_free(name)


def handles_random(name: str) -> Iterator[str]:
    """Handles without a look-up (users created through the API): "sam-seller-k3x9", a new tail each time."""
    base = handle_base(name)
    while True:
        yield f"{base}-{random_alnum(4).lower()}"


HANDLE_TRIES = 5


def user_insert(user: "User", *, handles: Iterable[str]) -> "User":
    """Insert the new `user` under the first of `handles` still free when its row goes in. Each try
    runs in a savepoint, so a handle another member took between the look-up and the insert (two
    sign-ups at once, or a random tail drawn twice) only costs a retry, and the caller's
    transaction goes on. Any other unique violation (the e-mail, the external id) is raised."""
    error = None
    for handle in islice(handles, HANDLE_TRIES):
        user.handle = handle
        try:
            with transaction.atomic():
                user.save(force_insert=True)
        except IntegrityError as taken:
            if unique_violated(taken) != "handle":
                raise
            error = taken
        else:
            return user
    raise IntegrityError(f"no free handle for {user.display_name!r} in {HANDLE_TRIES} tries") from error


def unique_violated(error: IntegrityError) -> str:
    """The field of the user table whose unique constraint `error` is about ("handle", "email",
    "external_user_id"), from the constraint's name as PostgreSQL reports it; "" when unknown."""
    table = User._meta.db_table
    name = getattr(getattr(error.__cause__, "diag", None), "constraint_name", None)
    if name is None:  # SQLite names the column in its message: "UNIQUE constraint failed: marketplace_user.handle"
        return next((f for f in ("handle", "email", "external_user_id") if f"{table}.{f}" in str(error)), "")
    if name == "user_email_ci_unique":
        return "email"
    if name == "user_external_id_per_tenant":
        return "external_user_id"
    with connection.cursor() as cursor:
        columns = connection.introspection.get_constraints(cursor, table).get(name, {}).get("columns") or []
    return columns[0] if len(columns) == 1 else ""


def avatar_path(user: "User", filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()
    return f"avatars/{user.public_id}/{random_alnum(16)}.{extension}"


class User(AbstractBaseUser, PermissionsMixin):
    """A marketplace member. Everyone can buy and sell; staff users are support."""

    class Type(models.TextChoices):
        BUYER = "BUYER"
        SELLER = "SELLER"
        BOTH = "BOTH"

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        SUSPENDED = "SUSPENDED"
        PENDING_VERIFICATION = "PENDING_VERIFICATION"

    public_id = models.CharField(max_length=40, unique=True, default=new_user_id, editable=False)
    # Web members log in with their e-mail; users created through the API may have none.
    email = models.EmailField("e-mail address", unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=100, help_text="Shown to other members.")
    # The member's public address, /sellers/<handle>/: unique, set once at creation.
    handle = models.SlugField(max_length=HANDLE_MAX_LENGTH, unique=True)
    about = models.TextField(max_length=600, blank=True, help_text="A few words shown on the seller profile.")
    avatar = models.ImageField(upload_to=avatar_path, blank=True)
    # NULL, not "", for web members: many of them must fit the per-tenant unique constraint.
    external_user_id = models.CharField(  # noqa: DJ001
        max_length=255, null=True, blank=True, help_text="the integrating marketplace's own user id"
    )
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.BOTH)
    status = models.CharField(max_length=25, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    marketplace_id = models.CharField(max_length=100, blank=True, help_text="tenant of the API key that created it")
    # The member's own Airtm account (checked at Airtm when linked): where top-ups come from and
    # withdrawals go. Blank until linked; one link per member, changed only by support.
    airtm_user_id = models.CharField(max_length=100, blank=True, help_text="Airtm's id of the linked account")
    airtm_email = models.EmailField("Airtm e-mail", blank=True)
    airtm_linked_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField("support staff", default=False, help_text="Can use the backoffice.")
    date_joined = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["display_name"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            # Each marketplace (tenant) has its own namespace of user ids.
            models.UniqueConstraint(fields=["marketplace_id", "external_user_id"], name="user_external_id_per_tenant"),
        ]

    def __str__(self):
        return f"{self.display_name} <{self.email or self.external_user_id or self.public_id}>"

    def save(self, *args, **kwargs):
        if not self.handle:  # users created outside the manager (the API): no look-up, a random tail
            self.handle = f"{handle_base(self.display_name or 'member')}-{random_alnum(4).lower()}"
        super().save(*args, **kwargs)

    def clean(self):
        super().clean()
        if self.email:
            self.email = self.__class__.objects.normalize_email(self.email).lower()

    @property
    def is_support(self) -> bool:
        return self.is_staff


class VisitorSession(AbstractBaseSession):
    """A visitor's session (Django's database session) with the member it is logged in as in a
    column of its own: a page reads the session and its member in one statement
    (marketplace/sessions.py), and support can see and end a member's sessions in the backoffice."""

    # No constraint in the database: saving a session that names a member deleted a moment ago
    # must not fail (Django's create() would retry a failed insert with new keys forever). Deleting
    # a member deletes their sessions (the ORM's cascade); a session left naming none has none.
    member = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, db_constraint=False, related_name="sessions"
    )

    class Meta:
        verbose_name = "session"

    def __str__(self):
        # Never the key: it is the visitor's credential.
        return f"Session of {self.member or 'a visitor'} until {self.expire_date:%Y-%m-%d %H:%M} UTC"

    @classmethod
    def get_session_store_class(cls):
        from marketplace.sessions import SessionStore

        return SessionStore


def new_listing_id() -> str:
    return public_id("lst_")


class Category(models.Model):
    """A shelf of the marketplace; buyers filter listings by it."""

    name = models.CharField(max_length=60, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    icon = models.CharField(max_length=40, blank=True, help_text='A Bootstrap icon name, e.g. "palette".')
    image = models.ImageField(upload_to="categories/", blank=True, help_text="Shown on the home page's category tiles.")
    position = models.PositiveSmallIntegerField(default=0, help_text="Lower comes first.")

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name


class ListingQuerySet(models.QuerySet):
    def browsable(self):
        """What buyers may see: active listings of sellers in good standing."""
        return self.filter(status=Listing.Status.ACTIVE, seller__is_active=True, seller__status=User.Status.ACTIVE)

    def owned_by(self, user):
        """The seller's own listings that still exist for them (active and paused)."""
        return self.filter(seller=user).exclude(status=Listing.Status.DELETED)


class Listing(models.Model):
    """A service a seller offers at a fixed price, paid through escrow (optionally milestone by milestone)."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        PAUSED = "PAUSED", "Paused"
        # Soft delete: orders placed on the listing keep pointing at it.
        DELETED = "DELETED", "Deleted"

    public_id = models.CharField(max_length=40, unique=True, default=new_listing_id, editable=False)
    seller = models.ForeignKey(User, on_delete=models.PROTECT, related_name="listings")
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="listings")
    title = models.CharField(max_length=120)
    description = models.TextField(max_length=5000)
    # Whole cents: exact, and sortable in every database.
    price_cents = models.PositiveBigIntegerField()
    delivery_days = models.PositiveSmallIntegerField(help_text="Days from the funded order to the delivery.")
    delivery_terms = models.TextField(max_length=2000, blank=True, help_text="What the buyer receives, and how.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Kept current by a database trigger on PostgreSQL (see migration 0004); unused on SQLite.
    search_vector = SearchVectorField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = ListingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="listing_status_created_idx"),
            models.Index(fields=["status", "price_cents"], name="listing_status_price_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(price_cents__gt=0), name="listing_price_positive"),
        ]

    def __str__(self):
        return f"{self.title} ({self.public_id})"

    @property
    def is_browsable(self) -> bool:
        """ListingQuerySet.browsable() for one loaded listing."""
        return self.status == self.Status.ACTIVE and self.seller.is_active and self.seller.status == User.Status.ACTIVE

    @property
    def price(self) -> Decimal:
        """The price in dollars, exactly."""
        return Decimal(self.price_cents).scaleb(-2)  # 12050 -> Decimal('120.50')

    @property
    def cover_image(self):
        """The first image, read from the prefetched images when the selector prefetched them."""
        images = list(self.images.all())
        return images[0] if images else None


def listing_image_path(image: "ListingImage", filename: str) -> str:
    # The name is ours, never the uploader's: a random stem and the extension of the decoded format.
    extension = filename.rsplit(".", 1)[-1].lower()
    return f"listings/{image.listing.public_id}/{random_alnum(16)}.{extension}"


class ListingImage(models.Model):
    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to=listing_image_path, width_field="width", height_field="height")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return f"Image {self.position + 1} of {self.listing.public_id}"


class ListingMilestone(models.Model):
    """One part of the delivery, released from escrow on its own; a listing's milestones sum to its price."""

    listing = models.ForeignKey(Listing, on_delete=models.CASCADE, related_name="milestones")
    position = models.PositiveSmallIntegerField(default=0)
    title = models.CharField(max_length=120)
    amount_cents = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_cents__gt=0), name="listing_milestone_amount_positive"),
        ]

    def __str__(self):
        return f"{self.title} (${self.amount:,.2f})"

    @property
    def amount(self) -> Decimal:
        return Decimal(self.amount_cents).scaleb(-2)


class DisputeReason(models.TextChoices):
    """Why an order is disputed (API.md §9); the disputes app's cases use the same values."""

    NOT_DELIVERED = "NOT_DELIVERED", "not delivered"
    QUALITY_ISSUE = "QUALITY_ISSUE", "quality issue"
    OTHER = "OTHER", "other"


def new_order_id() -> str:
    return public_id("ord_")


class Order(ConcurrentTransitionMixin, models.Model):
    """A purchase paid through its own escrow. States and transitions are API.md §16's.

    Transitions say who may take them (`permission`: buyer, seller, support, or the
    system, which takes every `system` step) and under which `conditions`; services
    lock the row, call one, then write its audit record and event in the same transaction.
    """

    class Status(models.TextChoices):
        ORDER_CREATED = "ORDER_CREATED", "created"
        FUNDS_RESERVED = "FUNDS_RESERVED", "funds on hold"
        ESCROW_CREATING = "ESCROW_CREATING", "setting up payment protection"
        ESCROW_FUNDING = "ESCROW_FUNDING", "securing the payment"
        ESCROW_FUNDED = "ESCROW_FUNDED", "payment secured"
        IN_PROGRESS = "IN_PROGRESS", "in progress"
        RELEASE_REQUESTED = "RELEASE_REQUESTED", "paying the seller"
        RELEASED = "RELEASED", "seller paid"
        REFUND_REQUESTED = "REFUND_REQUESTED", "refunding"
        REFUNDED = "REFUNDED", "refunded"
        DISPUTED = "DISPUTED", "in dispute"
        CLOSED = "CLOSED", "closed"

    class Outcome(models.TextChoices):
        NONE = "", "open"
        CANCELED = "canceled"
        RELEASED = "released"
        REFUNDED = "refunded"

    S = Status

    public_id = models.CharField(max_length=40, unique=True, default=new_order_id, editable=False)
    marketplace_id = models.CharField(max_length=100, blank=True, default="")
    client_order_ref = models.CharField(max_length=255, blank=True, default="")
    checkout_token = models.CharField(max_length=64, blank=True, default="", help_text="one order per checkout form")
    buyer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="purchases")
    seller = models.ForeignKey(User, on_delete=models.PROTECT, related_name="sales")
    listing = models.ForeignKey(Listing, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    amount = models.BigIntegerField(help_text="stroops (10^-7 USD)")
    currency = models.CharField(max_length=3, default="USD")
    status = FSMField(max_length=20, choices=Status.choices, default=Status.ORDER_CREATED, protected=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True, default="")
    title = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    metadata = models.JSONField(null=True, blank=True)
    autopilot = models.BooleanField(
        default=False, help_text="web checkout: reserve → deploy → fund run on their own after confirmation"
    )
    cancel_reason = models.CharField(max_length=255, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="every milestone delivered: inspection starts")
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace_id", "client_order_ref"],
                condition=~models.Q(client_order_ref=""),
                name="order_client_ref_unique",
            ),
            models.UniqueConstraint(
                fields=["buyer", "checkout_token"],
                condition=~models.Q(checkout_token=""),
                name="order_once_per_checkout",
            ),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(condition=~models.Q(buyer=models.F("seller")), name="order_buyer_is_not_seller"),
        ]
        indexes = [
            models.Index(fields=["buyer", "-created_at"], name="order_buyer_created_idx"),
            models.Index(fields=["seller", "-created_at"], name="order_seller_created_idx"),
            models.Index(fields=["status", "delivered_at"], name="order_status_delivered_idx"),
        ]
        permissions = [("settle_order_manually", "Can release or refund an order's escrow outside a dispute")]

    def __str__(self):
        return f"{self.public_id} {self.title[:40]} ({self.status})"

    # --- who may act (`actor`: marketplace.orders.OrderActor) ---------------------------
    def is_buyer(self, user) -> bool:
        return user is not None and user.pk == self.buyer_id

    def is_seller(self, user) -> bool:
        return user is not None and user.pk == self.seller_id

    def is_participant(self, user) -> bool:
        return self.is_buyer(user) or self.is_seller(user)

    def _buyer_or_support(self, actor) -> bool:
        return self.is_buyer(actor.user) or actor.is_support or actor.is_system

    def _seller_or_support(self, actor) -> bool:
        return self.is_seller(actor.user) or actor.is_support or actor.is_system

    def _participant_or_support(self, actor) -> bool:
        return self.is_participant(actor.user) or actor.is_support or actor.is_system

    def _support(self, actor) -> bool:
        return actor.is_support

    def _system(self, actor) -> bool:
        return actor.is_system

    # --- conditions -------------------------------------------------------------------
    def all_milestones_delivered(self) -> bool:
        return all(m.status != OrderMilestone.Status.OPEN for m in self.milestones.all())

    def no_open_dispute(self) -> bool:
        return self.status != self.S.DISPUTED

    # --- transitions (API.md §16) -------------------------------------------------------
    @transition(field=status, source=S.ORDER_CREATED, target=S.FUNDS_RESERVED, permission=_buyer_or_support)
    def reserve(self):
        pass

    @transition(
        field=status, source=[S.ORDER_CREATED, S.FUNDS_RESERVED], target=S.CLOSED, permission=_participant_or_support
    )
    def cancel(self, *, reason: str = ""):
        self.outcome, self.cancel_reason, self.closed_at = self.Outcome.CANCELED, reason[:255], timezone.now()

    @transition(field=status, source=S.FUNDS_RESERVED, target=S.ESCROW_CREATING, permission=_buyer_or_support)
    def escrow_create(self):
        pass

    @transition(field=status, source=S.ESCROW_CREATING, target=S.ESCROW_FUNDING, permission=_system)
    def escrow_deployed(self):
        pass

    @transition(field=status, source=S.ESCROW_CREATING, target=S.FUNDS_RESERVED, permission=_system)
    def escrow_deploy_failed(self):
        pass

    @transition(field=status, source=S.ESCROW_FUNDING, target=S.ESCROW_FUNDED, permission=_system)
    def escrow_funded(self):
        pass

    @transition(field=status, source=S.ESCROW_FUNDED, target=S.IN_PROGRESS, permission=_system)
    def start(self):
        pass

    @transition(
        field=status,
        source=S.IN_PROGRESS,
        target=S.RELEASE_REQUESTED,
        permission=_buyer_or_support,
        conditions=[all_milestones_delivered],
    )
    def request_release(self):
        pass

    @transition(field=status, source=S.IN_PROGRESS, target=S.RELEASE_REQUESTED, permission=_support)
    def release_undelivered(self):
        """Support pays a stuck order out as a whole before every milestone is delivered
        (the backoffice's manual release, `order_release(..., undelivered_ok=True)`)."""

    @transition(field=status, source=S.IN_PROGRESS, target=S.REFUND_REQUESTED, permission=_seller_or_support)
    def request_refund(self):
        pass

    @transition(field=status, source=S.IN_PROGRESS, target=S.DISPUTED, permission=_participant_or_support)
    def dispute(self):
        pass

    @transition(field=status, source=S.IN_PROGRESS, target=S.RELEASED, permission=_system)
    def last_milestone_released(self):
        pass

    @transition(
        field=status, source=[S.RELEASE_REQUESTED, S.REFUND_REQUESTED], target=S.IN_PROGRESS, permission=_system
    )
    def payout_rejected(self):
        pass

    @transition(field=status, source=[S.RELEASE_REQUESTED, S.REFUND_REQUESTED], target=S.DISPUTED, permission=_system)
    def resolution_rejected(self):
        """A dispute's payout refused for good by the chain: the case goes back to support."""

    @transition(field=status, source=S.RELEASE_REQUESTED, target=S.RELEASED, permission=_system)
    def released(self):
        pass

    @transition(field=status, source=S.REFUND_REQUESTED, target=S.REFUNDED, permission=_system)
    def refunded(self):
        pass

    @transition(field=status, source=S.DISPUTED, target=S.IN_PROGRESS, permission=_participant_or_support)
    def dispute_withdrawn(self):
        """The party who opened the dispute takes it back: the order goes on as before."""

    @transition(field=status, source=S.DISPUTED, target=S.RELEASE_REQUESTED, permission=_support)
    def resolve_release(self):
        pass

    @transition(field=status, source=S.DISPUTED, target=S.REFUND_REQUESTED, permission=_support)
    def resolve_refund(self):
        pass

    @transition(field=status, source=S.DISPUTED, target=S.RELEASED, permission=_support)
    def resolve_split(self):
        pass

    @transition(field=status, source=[S.RELEASED, S.REFUNDED], target=S.CLOSED, permission=_system)
    def close(self):
        self.outcome = self.Outcome.RELEASED if self.status == self.S.RELEASED else self.Outcome.REFUNDED
        self.closed_at = timezone.now()


def milestone_evidence_path(milestone: "OrderMilestone", filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()[:10] if "." in filename else "bin"
    return f"orders/{milestone.order.public_id}/{random_alnum(16)}.{extension}"


class OrderMilestone(models.Model):
    class Status(models.TextChoices):
        OPEN = "OPEN"
        COMPLETED = "COMPLETED"
        RELEASED = "RELEASED"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="milestones")
    position = models.PositiveSmallIntegerField()
    ref = models.CharField(max_length=100)
    title = models.CharField(max_length=255)
    amount = models.BigIntegerField(help_text="stroops")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    evidence_text = models.TextField(blank=True)
    evidence_link = models.URLField(blank=True)
    # Private: outside the public media, downloaded only through the order's access-checked view.
    evidence_file = models.FileField(upload_to=milestone_evidence_path, storage=private_storage, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "ref"], name="order_milestone_ref_unique"),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="order_milestone_amount_positive"),
        ]

    def __str__(self):
        return f"{self.order.public_id} / {self.ref} ({self.status})"


def new_review_id() -> str:
    return public_id("rev_")


class ReviewQuerySet(models.QuerySet):
    def visible(self):
        """What members see: every review support has not hidden."""
        return self.filter(hidden=False)


class Review(models.Model):
    """The buyer's rating (1-5) and words on a finished order, once; the seller may reply once.

    Support hides a review from the backoffice (with a reason, audited); a hidden review counts
    in no average. Averages and counts are computed from these rows when read, never stored."""

    BODY_MAX_LENGTH = 2000
    REPLY_MAX_LENGTH = 1000

    public_id = models.CharField(max_length=40, unique=True, default=new_review_id, editable=False)
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="review")
    # The order's listing, copied: a listing page reads its reviews without joining the orders.
    listing = models.ForeignKey(Listing, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews")
    seller = models.ForeignKey(User, on_delete=models.PROTECT, related_name="reviews_received")
    buyer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="reviews_written")
    rating = models.PositiveSmallIntegerField()
    body = models.TextField(max_length=BODY_MAX_LENGTH)
    reply = models.TextField(max_length=REPLY_MAX_LENGTH, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    hidden = models.BooleanField(default=False)
    hidden_reason = models.CharField(max_length=255, blank=True)
    hidden_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReviewQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["seller", "hidden", "-created_at"], name="review_seller_idx"),
            models.Index(fields=["listing", "hidden", "-created_at"], name="review_listing_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(rating__gte=1, rating__lte=5), name="review_rating_1_to_5"),
        ]

    def __str__(self):
        return f"{self.rating}/5 by {self.buyer_id} on {self.order_id} ({self.public_id})"
