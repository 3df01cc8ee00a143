from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

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
        user.save(using=self._db)
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
    # NULL, not "", for web members: many of them must fit the per-tenant unique constraint.
    external_user_id = models.CharField(  # noqa: DJ001
        max_length=255, null=True, blank=True, help_text="the integrating marketplace's own user id"
    )
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.BOTH)
    status = models.CharField(max_length=25, choices=Status.choices, default=Status.ACTIVE)
    metadata = models.JSONField(default=dict, blank=True)
    marketplace_id = models.CharField(max_length=100, blank=True, help_text="tenant of the API key that created it")
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

    def clean(self):
        super().clean()
        if self.email:
            self.email = self.__class__.objects.normalize_email(self.email).lower()

    @property
    def is_support(self) -> bool:
        return self.is_staff


def new_listing_id() -> str:
    return public_id("lst_")


class Category(models.Model):
    """A shelf of the marketplace; buyers filter listings by it."""

    name = models.CharField(max_length=60, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    icon = models.CharField(max_length=40, blank=True, help_text='A Bootstrap icon name, e.g. "palette".')
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
