from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from offerhub.ids import new_user_id


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
