"""A dispute on an order: opened by the buyer or the seller; support reviews and resolves it.

Both parties add evidence (text, a link or a private file) and talk with support in the
case's thread; support also writes internal notes the parties never see."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from marketplace.models import DisputeReason, Order
from offerhub.files import private_storage
from offerhub.ids import new_dispute_evidence_id, new_dispute_id, new_dispute_message_id, random_alnum


class Party(models.TextChoices):
    """Who speaks in a case."""

    BUYER = "BUYER"
    SELLER = "SELLER"
    SUPPORT = "SUPPORT"


class Dispute(ConcurrentTransitionMixin, models.Model):
    class Status(models.TextChoices):
        OPEN = "OPEN"
        UNDER_REVIEW = "UNDER_REVIEW"
        RESOLVED = "RESOLVED"
        WITHDRAWN = "WITHDRAWN"

    class OpenedBy(models.TextChoices):
        BUYER = "BUYER"
        SELLER = "SELLER"

    Reason = DisputeReason

    class Decision(models.TextChoices):
        FULL_RELEASE = "FULL_RELEASE"
        FULL_REFUND = "FULL_REFUND"
        SPLIT = "SPLIT"

    UNSETTLED = (Status.OPEN, Status.UNDER_REVIEW)

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
    respond_by = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="the other party answers by then, or the case is overdue"
    )
    responded_at = models.DateTimeField(null=True, blank=True, help_text="the other party's first evidence or message")
    resolved_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.public_id} on {self.order.public_id} ({self.status})"

    @property
    def responding_party(self) -> str:
        """The party who did not open the case, and has to answer it."""
        return Party.SELLER if self.opened_by == self.OpenedBy.BUYER else Party.BUYER

    def is_overdue(self, now=None) -> bool:
        """Unsettled, the other party has not answered, and their time is up."""
        now = now or timezone.now()
        return (
            self.status in self.UNSETTLED
            and self.responded_at is None
            and self.respond_by is not None
            and self.respond_by < now
        )

    @transition(field=status, source=Status.OPEN, target=Status.UNDER_REVIEW)
    def assign(self, *, agent: str):
        self.assigned_to = agent[:100]

    @transition(field=status, source=Status.UNDER_REVIEW, target=Status.UNDER_REVIEW)
    def reassign(self, *, agent: str):
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

    @transition(field=status, source=Status.WITHDRAWN, target=Status.OPEN)
    def reopen_withdrawn(self, *, opened_by: str, reason: str, evidence: list[str] | None):
        """A party disputes the order again after a withdrawal: the same case opens anew, from now."""
        self.opened_by, self.reason, self.evidence = opened_by, reason, evidence
        self.withdrawn_at = self.responded_at = None
        self.created_at = timezone.now()

    @transition(field=status, source=Status.OPEN, target=Status.WITHDRAWN)
    def withdraw(self):
        """The opener takes the case back before support picked it up (disputes.services.dispute_withdraw)."""
        self.withdrawn_at = timezone.now()


def dispute_evidence_path(evidence: "DisputeEvidence", filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()[:10] if "." in filename else "bin"
    return f"disputes/{evidence.dispute.public_id}/{random_alnum(16)}.{extension}"


class DisputeEvidence(models.Model):
    """One piece of evidence: a text, a link or a file (private: served only to the parties
    and staff by the case's access-checked view)."""

    class Kind(models.TextChoices):
        TEXT = "TEXT"
        LINK = "LINK"
        FILE = "FILE"

    public_id = models.CharField(max_length=40, unique=True, default=new_dispute_evidence_id, editable=False)
    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="evidence_items")
    party = models.CharField(max_length=10, choices=Party.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    text = models.TextField(blank=True, help_text="what the party says, or the file's caption")
    link = models.URLField(max_length=2000, blank=True)
    file = models.FileField(upload_to=dispute_evidence_path, storage=private_storage, blank=True, max_length=255)
    file_name = models.CharField(max_length=255, blank=True, help_text="the name it was uploaded under")
    file_size = models.PositiveIntegerField(null=True, blank=True, help_text="bytes")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name_plural = "dispute evidence"

    def __str__(self):
        return f"{self.public_id} ({self.kind} from {self.party})"

    @property
    def is_image(self) -> bool:
        return self.kind == self.Kind.FILE and self.file_name.lower().rsplit(".", 1)[-1] in IMAGE_EXTENSIONS


IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "gif", "webp")


class DisputeMessage(models.Model):
    """A message in the case's thread; `internal` ones are support's notes, never shown to the parties."""

    public_id = models.CharField(max_length=40, unique=True, default=new_dispute_message_id, editable=False)
    dispute = models.ForeignKey(Dispute, on_delete=models.CASCADE, related_name="messages")
    party = models.CharField(max_length=10, choices=Party.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    author_name = models.CharField(max_length=100, blank=True, help_text="as shown in the thread")
    body = models.TextField()
    internal = models.BooleanField(default=False, help_text="support's note: the parties never see it")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self):
        note = "note" if self.internal else "message"
        return f"{self.public_id} ({note} from {self.party})"
