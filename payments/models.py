"""The money model: a double-entry ledger in integer stroops, holds, and Stellar wallets.

Every movement is one JournalEntry whose Postings sum to zero. A LedgerAccount's
`balance` is kept equal to the sum of its postings in the same transaction, so a
balance read is one row whatever the history; tests prove the two agree.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from stellar_sdk import Keypair

from offerhub.ids import new_topup_id, new_wallet_id, new_withdrawal_id
from offerhub.models import AppendOnlyError, AppendOnlyQuerySet
from offerhub.money import money_from_stroops
from payments.crypto import secret_decrypt


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
        return f"{self.code} (${money_from_stroops(self.balance)})"

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
        return f"{self.account.code} {'+' if self.amount > 0 else ''}${money_from_stroops(self.amount)}"

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

    class Owner(models.TextChoices):
        """Who may void or move the hold: the balance endpoints touch only their own holds."""

        BALANCE = "balance", "the balance API (reserve / cancel-reservation / deduct-reserved / release)"
        ORDER = "order", "a marketplace order (reserve, cancel, escrow funding)"
        PAYMENT = "payment", "a payment in flight (withdrawal, release, support debit)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="holds")
    reference = models.CharField(max_length=100, help_text="the order id (or any reference) the money is held for")
    owner = models.CharField(
        max_length=10, choices=Owner.choices, default=Owner.BALANCE, help_text="who may void or move it"
    )
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
        remaining, amount = money_from_stroops(self.remaining), money_from_stroops(self.amount)
        return f"hold {self.reference} of {self.user_id}: ${remaining} of ${amount} ({self.status}, {self.owner})"


class SecretHolder(models.Model):
    """A Stellar keypair whose secret is encrypted at rest and never shown."""

    public_key = models.CharField(max_length=56, unique=True)
    encrypted_secret = models.TextField(editable=False)
    key_version = models.CharField(max_length=12, editable=False)

    class Meta:
        abstract = True

    def __repr__(self):
        return f"<{type(self).__name__} {self.public_key}>"

    def keypair(self):
        """Decrypt for signing only; never log or return the result."""
        return Keypair.from_secret(secret_decrypt(self.encrypted_secret))


class PlatformAccount(SecretHolder):
    """The platform's Stellar account (the treasury): receives the platform fee, sponsors
    reserves and pays fees. One row. Escrows are signed by PlatformSigner accounts."""

    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"platform {self.public_key}"


class PlatformSigner(SecretHolder):
    """One of the platform's escrow signers: deploys, releases and resolves the escrows that name
    it (their releaseSigner and disputeResolver). Holds XLM only (never receives money), its fees
    paid by the platform account's fee bumps. Never deleted: an escrow's roles name it for good."""

    created_at = models.DateTimeField(auto_now_add=True)
    # Set by platform_bootstrap once the account is seen on chain: only funded signers get new
    # escrows (a deploy signed by an account the network does not know is refused for good).
    funded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"platform signer {self.public_key}"


class Wallet(SecretHolder):
    """A user's own Stellar account ("invisible wallet": the key is held by the server)."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "keypair created, account not yet on chain"
        ACTIVE = "ACTIVE", "on chain with a USDC trustline"

    public_id = models.CharField(max_length=40, unique=True, default=new_wallet_id, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="wallet")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    activation_tx_hash = models.CharField(max_length=64, blank=True)
    activation_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"wallet {self.public_key[:8]}… of {self.user_id} ({self.status})"


class ChainCursor(models.Model):
    """Where a Horizon feed was last read up to (its paging token)."""

    name = models.CharField(max_length=50, unique=True)
    paging_token = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name} @ {self.paging_token or 'start'}"


class Withdrawal(ConcurrentTransitionMixin, models.Model):
    """Money leaving a user's balance: to a Stellar address (crypto) or through Airtm.

    Crypto: CREATED → COMMITTED (held, transaction signed and its hash stored) →
    COMPLETED, or PENDING while Horizon's answer is unknown, or FAILED (hold returned).
    Airtm (bank, airtm_balance): the status follows the payout at Airtm; once Airtm has paid,
    the held USDC is swept from the user's wallet to the platform treasury (the row's
    transaction fields) and only then is it COMPLETED. A bridge (a top-up's USDC, paid by the
    platform treasury to the user's wallet) uses the crypto path with no hold.
    """

    class Status(models.TextChoices):
        CREATED = "WITHDRAWAL_CREATED"
        COMMITTED = "WITHDRAWAL_COMMITTED"
        PENDING = "WITHDRAWAL_PENDING"
        PENDING_USER_ACTION = "WITHDRAWAL_PENDING_USER_ACTION"
        COMPLETED = "WITHDRAWAL_COMPLETED"
        FAILED = "WITHDRAWAL_FAILED"
        CANCELED = "WITHDRAWAL_CANCELED"

    class DestinationType(models.TextChoices):
        CRYPTO = "crypto"
        BANK = "bank"
        AIRTM_BALANCE = "airtm_balance"

    class Purpose(models.TextChoices):
        WITHDRAWAL = "withdrawal", "user withdrawal"
        RELEASE = "release", "support release of a hold to another user"
        BURN = "burn", "support debit (sandbox: USDC returned to the issuer)"
        BRIDGE = "bridge", "top-up: the platform treasury pays USDC into the user's wallet"

    S = Status
    TERMINAL = (S.COMPLETED, S.FAILED, S.CANCELED)

    public_id = models.CharField(max_length=40, unique=True, default=new_withdrawal_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="withdrawals")
    amount = models.BigIntegerField(help_text="stroops")
    fee = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    status = FSMField(max_length=40, choices=Status.choices, default=Status.CREATED, protected=True)
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.WITHDRAWAL)
    hold_reference = models.CharField(max_length=100, blank=True, help_text="the hold paying for it")
    destination_type = models.CharField(max_length=20, choices=DestinationType.choices)
    destination_ref = models.CharField(max_length=255)
    memo = models.CharField(max_length=28, blank=True)
    description = models.CharField(max_length=255, blank=True)
    committed = models.BooleanField(default=False)
    transaction_hash = models.CharField(max_length=64, blank=True, db_index=True)
    attempted_hashes = models.JSONField(default=list, blank=True, help_text="every envelope ever signed for it")
    envelope_xdr = models.TextField(blank=True, editable=False)
    envelope_expires_at = models.DateTimeField(null=True, blank=True)
    submit_attempts = models.PositiveIntegerField(default=0)
    failure_reason = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    airtm_payout_id = models.CharField(max_length=100, blank=True)
    principal_id = models.CharField(max_length=40, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["principal_id", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="withdrawal_once_per_idempotency_key",
            ),
            # One bridge payment per top-up, whoever asks for it first.
            models.UniqueConstraint(
                fields=["hold_reference"], condition=Q(purpose="bridge"), name="one_bridge_per_reference"
            ),
        ]

    def __str__(self):
        return f"{self.public_id} {self.destination_type} ${money_from_stroops(self.amount)} ({self.status})"

    def save(self, *args, **kwargs):
        if not self.hold_reference:
            self.hold_reference = self.public_id
        super().save(*args, **kwargs)

    @transition(field=status, source=S.CREATED, target=S.COMMITTED)
    def commit(self):
        self.committed = True

    @transition(field=status, source=[S.COMMITTED, S.PENDING, S.PENDING_USER_ACTION], target=S.PENDING)
    def mark_pending(self):
        """Submitted, answer unknown (timeout, provider down): resolved by lookup later."""

    @transition(field=status, source=[S.COMMITTED, S.PENDING], target=S.PENDING_USER_ACTION)
    def mark_pending_user_action(self):
        """Airtm waits for the recipient (e.g. to verify their account) before paying."""

    @transition(field=status, source=[S.CREATED, S.COMMITTED, S.PENDING], target=S.CANCELED)
    def cancel(self, *, reason: str = ""):
        """Airtm only, while Airtm still allows it (a payout CREATED or PENDING there)."""
        self.failure_reason = reason[:255]

    @property
    def through_airtm(self) -> bool:
        return self.destination_type != self.DestinationType.CRYPTO

    @transition(field=status, source=[S.CREATED, S.COMMITTED, S.PENDING], target=S.COMPLETED)
    def complete(self):
        self.completed_at = timezone.now()

    @transition(field=status, source=[S.CREATED, S.COMMITTED, S.PENDING, S.PENDING_USER_ACTION], target=S.FAILED)
    def fail(self, *, reason: str, code: str = ""):
        self.failure_reason = reason[:255]
        self.error_code = code[:50]


class ReconciliationReport(models.Model):
    """A difference between a wallet's USDC on chain and the ledger. Reported, never auto-fixed."""

    class Status(models.TextChoices):
        OPEN = "OPEN"
        RESOLVED = "RESOLVED"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="reconciliation_reports")
    chain_balance = models.BigIntegerField(help_text="stroops of USDC on chain")
    ledger_balance = models.BigIntegerField(help_text="stroops available + held in the ledger")
    difference = models.BigIntegerField(help_text="chain minus ledger")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True, help_text="what support found and did (with a correcting adjustment)")
    detected_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["wallet"], condition=Q(status="OPEN"), name="one_open_report_per_wallet")
        ]

    def __str__(self):
        return f"drift on wallet {self.wallet.public_key[:8]}… ({self.status})"


class AirtmDiscrepancy(models.Model):
    """Something our record of a top-up (payin) or an Airtm withdrawal (payout) says that Airtm does
    not (payments.airtm_reconciliation). Reported for support, never auto-fixed; one OPEN per record."""

    class Kind(models.TextChoices):
        PAYIN = "payin", "top-up (Airtm payin)"
        PAYOUT = "payout", "withdrawal (Airtm payout)"

    class Status(models.TextChoices):
        OPEN = "OPEN"
        RESOLVED = "RESOLVED"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    our_reference = models.CharField(max_length=40, help_text="the top-up's or withdrawal's public id")
    airtm_id = models.CharField(max_length=100, blank=True, help_text="Airtm's payin or payout id, when known")
    our_status = models.CharField(max_length=40)
    airtm_status = models.CharField(max_length=40, blank=True, help_text="as Airtm writes it; blank: unknown there")
    our_amount = models.BigIntegerField(help_text="stroops")
    airtm_amount = models.BigIntegerField(null=True, blank=True, help_text="stroops; empty: unknown there")
    problem = models.TextField(help_text="what differs, in words")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    note = models.TextField(blank=True, help_text="what support found and did")
    detected_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "Airtm discrepancies"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "our_reference"], condition=Q(status="OPEN"), name="one_open_airtm_discrepancy"
            )
        ]

    def __str__(self):
        return f"Airtm {self.kind} of {self.our_reference} ({self.status})"


class Topup(ConcurrentTransitionMixin, models.Model):
    """Dollars coming in through Airtm (API.md §7, §16): a payin the member pays at Airtm's
    checkout, then the USD→USDC bridge to the member's own wallet, which credits the balance.

    CREATED (row committed before Airtm is called) → AWAITING_USER_CONFIRMATION (payin created,
    checkout URL known) → PROCESSING (Airtm confirmed, or is processing, the payment; the bridge
    runs once `payin_confirmed_at` is set) → SUCCEEDED (bridge landed). FAILED and CANCELED end it.
    """

    class Status(models.TextChoices):
        CREATED = "TOPUP_CREATED"
        AWAITING_USER_CONFIRMATION = "TOPUP_AWAITING_USER_CONFIRMATION"
        PROCESSING = "TOPUP_PROCESSING"
        SUCCEEDED = "TOPUP_SUCCEEDED"
        FAILED = "TOPUP_FAILED"
        CANCELED = "TOPUP_CANCELED"

    class CanceledBy(models.TextChoices):
        USER = "user"
        SYSTEM = "system"
        ADMIN = "admin"

    S = Status
    TERMINAL = (S.SUCCEEDED, S.FAILED, S.CANCELED)

    public_id = models.CharField(max_length=40, unique=True, default=new_topup_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="topups")
    amount = models.BigIntegerField(help_text="stroops")
    currency = models.CharField(max_length=3, default="USD")
    status = FSMField(max_length=40, choices=Status.choices, default=Status.CREATED, protected=True)
    airtm_payin_id = models.CharField(max_length=100, blank=True, db_index=True)
    confirmation_uri = models.URLField(max_length=500, blank=True, help_text="Airtm's checkout page")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="canceled at Airtm if unpaid by then")
    payin_confirmed_at = models.DateTimeField(
        null=True, blank=True, help_text="when a GET at Airtm first showed the payin CONFIRMED"
    )
    failure_reason = models.CharField(max_length=255, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    canceled_by = models.CharField(max_length=10, choices=CanceledBy.choices, blank=True)
    description = models.CharField(max_length=250, blank=True)
    return_url = models.URLField(max_length=500, blank=True)
    cancel_url = models.URLField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    bridge_withdrawal = models.ForeignKey(
        Withdrawal,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the USDC payment from the treasury to the member's wallet",
    )
    principal_id = models.CharField(max_length=40, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["principal_id", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="topup_once_per_idempotency_key",
            )
        ]

    def __str__(self):
        return f"{self.public_id} ${money_from_stroops(self.amount)} ({self.status})"

    @transition(field=status, source=S.CREATED, target=S.AWAITING_USER_CONFIRMATION)
    def await_confirmation(self):
        """The payin exists at Airtm; the member pays on its checkout page."""

    @transition(field=status, source=[S.CREATED, S.AWAITING_USER_CONFIRMATION], target=S.PROCESSING)
    def process(self):
        """Airtm is processing or has confirmed the payment."""

    @transition(field=status, source=[S.AWAITING_USER_CONFIRMATION, S.PROCESSING], target=S.SUCCEEDED)
    def succeed(self):
        self.succeeded_at = timezone.now()
        self.failure_reason = ""

    @transition(field=status, source=[S.CREATED, S.AWAITING_USER_CONFIRMATION, S.PROCESSING], target=S.FAILED)
    def fail(self, *, reason: str, code: str = ""):
        self.failure_reason = reason[:255]
        self.error_code = code[:50]

    @transition(field=status, source=S.AWAITING_USER_CONFIRMATION, target=S.CANCELED)
    def cancel(self, *, by: str, reason: str = ""):
        self.canceled_by = by
        self.failure_reason = reason[:255]
