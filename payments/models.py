"""The money model: a double-entry ledger in integer stroops, holds, and Stellar wallets.

Every movement is one JournalEntry whose Postings sum to zero. A LedgerAccount's
`balance` is kept equal to the sum of its postings in the same transaction, so a
balance read is one row whatever the history; tests prove the two agree.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from offerhub.models import AppendOnlyError, AppendOnlyQuerySet

STROOPS_PER_UNIT = 10_000_000


class LedgerAccount(models.Model):
    class Kind(models.TextChoices):
        USER_AVAILABLE = "user_available", "user available"
        USER_HELD = "user_held", "user held"
        ESCROW = "escrow", "order escrow"
        EXTERNAL_STELLAR = "external_stellar", "external: Stellar"
        EXTERNAL_AIRTM = "external_airtm", "external: Airtm"
        PLATFORM_FEE = "platform_fee", "platform fee"
        TRUSTLESS_WORK_FEE = "trustless_work_fee", "Trustless Work fee"
        ADJUSTMENTS = "adjustments", "support adjustments"

    # Contra accounts: money entering the system drives them negative.
    MAY_GO_NEGATIVE = (Kind.EXTERNAL_STELLAR, Kind.EXTERNAL_AIRTM, Kind.ADJUSTMENTS)

    code = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    reference = models.CharField(max_length=100, blank=True)
    balance = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(balance__gte=0) | Q(kind__in=["external_stellar", "external_airtm", "adjustments"]),
                name="ledger_account_no_overdraft",
            )
        ]

    def __str__(self):
        return f"{self.code} ({self.balance} stroops)"

    @property
    def may_go_negative(self) -> bool:
        return self.kind in self.MAY_GO_NEGATIVE


class JournalEntry(models.Model):
    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=50, db_index=True)
    description = models.CharField(max_length=255, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "journal entries"

    def __str__(self):
        return f"{self.kind} {self.idempotency_key}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Journal entries are never changed; post a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Journal entries are never deleted; post a correcting entry instead.")


class Posting(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    amount = models.BigIntegerField()  # stroops; positive credits the account
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["account", "id"])]
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="posting_amount_not_zero")]

    def __str__(self):
        return f"{self.account.code} {self.amount:+d}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Postings are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Postings are never deleted.")


class Hold(models.Model):
    """Two-phase money: reserved (available → held), then posted to a destination or voided."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE"
        POSTED = "POSTED"
        VOIDED = "VOIDED"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="holds")
    reference = models.CharField(max_length=100, help_text="the order id (or any reference) the money is held for")
    amount = models.BigIntegerField(help_text="stroops reserved")
    remaining = models.BigIntegerField(help_text="stroops still held")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "reference"], condition=Q(status="ACTIVE"), name="one_active_hold_per_reference"
            ),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=models.F("amount")),
                name="hold_remaining_within_amount",
            ),
        ]

    def __str__(self):
        return f"hold {self.reference} of {self.user_id}: {self.remaining}/{self.amount} ({self.status})"
