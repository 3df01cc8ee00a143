"""Escrow records: what OfferHub asked Trustless Work for, and what it has seen on chain.

One `Escrow` per order (its `engagement_id`). Every call that changes a contract is an
`EscrowStep`: the intent is recorded first, then the signed transaction and its hash
before anything is submitted, so a retry after a crash or a lost answer looks the
transaction up instead of sending a second one.
"""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from offerhub.ids import new_escrow_id


class Escrow(ConcurrentTransitionMixin, models.Model):
    class Status(models.TextChoices):
        CREATING = "CREATING"
        CREATED = "CREATED"
        FUNDING = "FUNDING"
        FUNDED = "FUNDED"
        RELEASING = "RELEASING"
        RELEASED = "RELEASED"
        REFUNDING = "REFUNDING"
        REFUNDED = "REFUNDED"
        DISPUTED = "DISPUTED"

    class Type(models.TextChoices):
        SINGLE = "single-release"
        MULTI = "multi-release"

    S = Status
    TERMINAL = (S.RELEASED, S.REFUNDED)

    public_id = models.CharField(max_length=40, unique=True, default=new_escrow_id, editable=False)
    engagement_id = models.CharField(max_length=100, unique=True, help_text="the order it holds money for")
    type = models.CharField(max_length=16, choices=Type.choices)
    status = FSMField(max_length=12, choices=Status.choices, default=Status.CREATING, protected=True)
    contract_id = models.CharField(max_length=56, null=True, blank=True, unique=True)
    title = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="escrows_bought")
    seller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="escrows_sold")
    hold_reference = models.CharField(max_length=100, help_text="the buyer's hold that funds it")
    roles = models.JSONField(default=dict, help_text="Trustless Work role → Stellar address")
    amount = models.BigIntegerField(help_text="stroops")
    platform_fee_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0"))
    balance = models.BigIntegerField(default=0, help_text="stroops in the contract, as last seen")
    flags = models.JSONField(default=dict, blank=True)
    funded_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.public_id} for {self.engagement_id} ({self.status})"

    @property
    def is_multi(self) -> bool:
        return self.type == self.Type.MULTI

    @transition(field=status, source=S.CREATING, target=S.CREATED)
    def mark_created(self, *, contract_id: str):
        self.contract_id = contract_id

    @transition(field=status, source=S.CREATED, target=S.FUNDING)
    def start_funding(self):
        pass

    @transition(field=status, source=S.FUNDING, target=S.CREATED)
    def funding_failed(self):
        pass

    @transition(field=status, source=S.FUNDING, target=S.FUNDED)
    def mark_funded(self):
        self.funded_at = timezone.now()

    @transition(field=status, source=[S.FUNDED, S.DISPUTED], target=S.RELEASING)
    def start_release(self):
        pass

    @transition(field=status, source=[S.FUNDED, S.DISPUTED], target=S.REFUNDING)
    def start_refund(self):
        pass

    @transition(field=status, source=[S.RELEASING, S.REFUNDING], target=S.FUNDED)
    def payout_failed(self):
        """A permanent rejection: the money is still in the contract."""

    @transition(field=status, source=[S.RELEASING, S.REFUNDING], target=S.DISPUTED)
    def resolution_failed(self):
        """A resolution was refused: the escrow stays frozen in dispute."""

    @transition(field=status, source=[S.RELEASING, S.DISPUTED, S.FUNDED], target=S.RELEASED)
    def mark_released(self):
        self.released_at = timezone.now()

    @transition(field=status, source=[S.REFUNDING, S.DISPUTED], target=S.REFUNDED)
    def mark_refunded(self):
        self.refunded_at = timezone.now()

    @transition(field=status, source=[S.FUNDED, S.RELEASING, S.REFUNDING], target=S.DISPUTED)
    def mark_disputed(self):
        pass


class EscrowMilestone(models.Model):
    """A milestone as the contract keeps it (index order), with our reference and title."""

    escrow = models.ForeignKey(Escrow, on_delete=models.CASCADE, related_name="milestones")
    index = models.PositiveSmallIntegerField()
    ref = models.CharField(max_length=100)
    title = models.CharField(max_length=500)
    amount = models.BigIntegerField(help_text="stroops (multi-release); the escrow's amount for single-release")
    chain_status = models.CharField(max_length=50, default="pending", help_text="the status string on chain")
    evidence = models.CharField(max_length=500, blank=True)
    approved = models.BooleanField(default=False)
    disputed = models.BooleanField(default=False)
    released = models.BooleanField(default=False)
    resolved = models.BooleanField(default=False)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(fields=["escrow", "index"], name="one_milestone_per_index"),
            models.UniqueConstraint(fields=["escrow", "ref"], name="milestone_ref_unique_per_escrow"),
        ]

    def __str__(self):
        return f"{self.escrow.public_id} #{self.index} {self.title[:40]}"


class EscrowStep(models.Model):
    """One contract call: intent → signed (hash stored) → confirmed, or failed."""

    class Action(models.TextChoices):
        DEPLOY = "deploy"
        FUND = "fund-escrow"
        MILESTONE_STATUS = "change-milestone-status"
        APPROVE = "approve-milestone"
        RELEASE = "release-funds"
        RELEASE_MILESTONE = "release-milestone-funds"
        DISPUTE = "dispute-escrow"
        DISPUTE_MILESTONE = "dispute-milestone"
        RESOLVE = "resolve-dispute"
        RESOLVE_MILESTONE = "resolve-milestone-dispute"

    class Status(models.TextChoices):
        PENDING = "PENDING", "intent recorded"
        SUBMITTED = "SUBMITTED", "signed; hash stored; maybe sent"
        CONFIRMED = "CONFIRMED"
        FAILED = "FAILED"

    escrow = models.ForeignKey(Escrow, on_delete=models.PROTECT, related_name="steps")
    key = models.CharField(max_length=150, unique=True, help_text="one step per intent: a retry finds this row")
    action = models.CharField(max_length=30, choices=Action.choices)
    milestone_index = models.PositiveSmallIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="the call's body (amounts as strings)")
    signer = models.CharField(max_length=56, help_text="the account that signs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    tx_hash = models.CharField(max_length=64, blank=True, db_index=True, help_text="the hash sent (outer if bumped)")
    attempted_hashes = models.JSONField(default=list, blank=True)
    signed_xdr = models.TextField(blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="the signed envelope's upper time bound")
    attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=80, blank=True, help_text="why it failed, or why its last run did")
    error_message = models.CharField(max_length=255, blank=True)
    failures = models.PositiveIntegerField(
        default=0, help_text="runs that ended without an outcome (provider down, an unexpected error)"
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="the resume sweeper leaves it alone until then (back-off, or a drive queued)"
    )
    actor_type = models.CharField(max_length=20, default="SYSTEM")
    actor_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["status", "updated_at"], name="escrow_step_status_idx")]

    OPEN = (Status.PENDING, Status.SUBMITTED)

    def __str__(self):
        where = f" #{self.milestone_index}" if self.milestone_index is not None else ""
        return f"{self.escrow.public_id} {self.action}{where} ({self.status})"


class EscrowDriftReport(models.Model):
    """A difference between our escrow record and the contract. Reported, never auto-fixed."""

    class Status(models.TextChoices):
        OPEN = "OPEN"
        RESOLVED = "RESOLVED"

    escrow = models.ForeignKey(Escrow, on_delete=models.PROTECT, related_name="drift_reports")
    differences = models.JSONField(help_text="field → {ours, chain}")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["escrow"], condition=Q(status="OPEN"), name="one_open_drift_per_escrow")
        ]

    def __str__(self):
        return f"drift on {self.escrow.public_id}: {', '.join(self.differences)} ({self.status})"
