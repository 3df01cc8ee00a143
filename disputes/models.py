"""A dispute on an order: opened by the buyer or the seller; support reviews and resolves it."""

from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from marketplace.models import DisputeReason, Order
from offerhub.ids import new_dispute_id


class Dispute(ConcurrentTransitionMixin, models.Model):
    class Status(models.TextChoices):
        OPEN = "OPEN"
        UNDER_REVIEW = "UNDER_REVIEW"
        RESOLVED = "RESOLVED"

    class OpenedBy(models.TextChoices):
        BUYER = "BUYER"
        SELLER = "SELLER"

    Reason = DisputeReason

    class Decision(models.TextChoices):
        FULL_RELEASE = "FULL_RELEASE"
        FULL_REFUND = "FULL_REFUND"
        SPLIT = "SPLIT"

    public_id = models.CharField(max_length=40, unique=True, default=new_dispute_id, editable=False)
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="dispute_record")
    opened_by = models.CharField(max_length=10, choices=OpenedBy.choices)
    reason = models.CharField(max_length=20, choices=Reason.choices)
    evidence = models.JSONField(null=True, blank=True, help_text="URLs or short texts")
    status = FSMField(max_length=15, choices=Status.choices, default=Status.OPEN, protected=True)
    resolution_decision = models.CharField(max_length=15, choices=Decision.choices, blank=True)
    decision_note = models.TextField(blank=True)
    assigned_to = models.CharField(max_length=100, blank=True)
    release_amount = models.BigIntegerField(null=True, blank=True, help_text="stroops to the seller")
    refund_amount = models.BigIntegerField(null=True, blank=True, help_text="stroops to the buyer")
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.public_id} on {self.order.public_id} ({self.status})"

    @transition(field=status, source=Status.OPEN, target=Status.UNDER_REVIEW)
    def assign(self, *, agent: str):
        self.assigned_to = agent[:100]

    @transition(field=status, source=Status.UNDER_REVIEW, target=Status.RESOLVED)
    def resolve(self, *, decision: str, release_amount: int, refund_amount: int, note: str):
        """The decision is final here; the payout it orders follows on chain (disputes.services)."""
        self.resolution_decision = decision
        self.release_amount, self.refund_amount = release_amount, refund_amount
        self.decision_note = note
        self.resolved_at = timezone.now()

    @transition(field=status, source=Status.RESOLVED, target=Status.UNDER_REVIEW)
    def reopen(self):
        """The chain refused the resolution's payout for good: nothing was paid, support decides again."""
        self.resolution_decision = ""
        self.release_amount = self.refund_amount = self.resolved_at = None
