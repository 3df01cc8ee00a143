"""The sandbox's simulated Stellar ledger: accounts, trustlines, transactions, payments.

Amounts are integer stroops (10^-7 of a unit), as on the real network. These tables
belong to the sandbox alone; production code only ever reaches them over HTTP.
"""

from django.db import models


class SandboxLedgerState(models.Model):
    """A single row: the number of the last closed ledger (one ledger per transaction)."""

    ledger_sequence = models.BigIntegerField(default=1000)

    def __str__(self):
        return f"ledger {self.ledger_sequence}"


class SandboxAccount(models.Model):
    account_id = models.CharField(max_length=56, primary_key=True)
    xlm_balance = models.BigIntegerField(default=0)
    sequence = models.BigIntegerField(default=0)
    num_subentries = models.PositiveIntegerField(default=0)
    num_sponsoring = models.PositiveIntegerField(default=0)
    num_sponsored = models.PositiveIntegerField(default=0)
    sponsor = models.CharField(max_length=56, blank=True)
    master_weight = models.PositiveSmallIntegerField(default=1)
    low_threshold = models.PositiveSmallIntegerField(default=0)
    med_threshold = models.PositiveSmallIntegerField(default=0)
    high_threshold = models.PositiveSmallIntegerField(default=0)
    last_modified_ledger = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.account_id


class SandboxSigner(models.Model):
    """Extra signers beside the master key (set_options is not simulated; kept for the admin)."""

    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="signers")
    key = models.CharField(max_length=56)
    weight = models.PositiveSmallIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key"], name="sandbox_signer_unique")]

    def __str__(self):
        return f"{self.key} ({self.weight}) on {self.account_id}"


class SandboxTrustline(models.Model):
    account = models.ForeignKey(SandboxAccount, on_delete=models.CASCADE, related_name="trustlines")
    asset_code = models.CharField(max_length=12)
    asset_issuer = models.CharField(max_length=56)
    balance = models.BigIntegerField(default=0)
    limit = models.BigIntegerField()
    sponsor = models.CharField(max_length=56, blank=True)
    last_modified_ledger = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "asset_code", "asset_issuer"], name="sandbox_trustline_unique")
        ]

    def __str__(self):
        return f"{self.account_id} trusts {self.asset_code}:{self.asset_issuer[:6]}…"


class SandboxTransaction(models.Model):
    hash = models.CharField(max_length=64, primary_key=True)
    ledger = models.BigIntegerField()
    source_account = models.CharField(max_length=56)
    source_account_sequence = models.BigIntegerField()
    fee_account = models.CharField(max_length=56)
    fee_charged = models.BigIntegerField()
    max_fee = models.BigIntegerField()
    operation_count = models.PositiveSmallIntegerField()
    successful = models.BooleanField()
    result_codes = models.JSONField(default=dict)
    memo_type = models.CharField(max_length=10, default="none")
    memo = models.CharField(max_length=100, blank=True)
    envelope_xdr = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.hash[:12]}… ({'ok' if self.successful else 'failed'})"


class SandboxPayment(models.Model):
    """One row per payment-like operation, in ledger order: Horizon's /payments feed."""

    id = models.BigAutoField(primary_key=True)  # the paging token
    transaction = models.ForeignKey(SandboxTransaction, on_delete=models.CASCADE, related_name="payments")
    type = models.CharField(max_length=20)  # payment | create_account
    source_account = models.CharField(max_length=56)
    from_account = models.CharField(max_length=56)
    to_account = models.CharField(max_length=56, db_index=True)
    asset_code = models.CharField(max_length=12, blank=True)  # blank: XLM
    asset_issuer = models.CharField(max_length=56, blank=True)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["from_account", "id"])]

    def __str__(self):
        return f"{self.type} {self.amount} {self.asset_code or 'XLM'} {self.from_account[:6]}→{self.to_account[:6]}"


class SandboxFault(models.Model):
    """Fault injection: make matching sandbox requests slow, fail or time out."""

    class Service(models.TextChoices):
        HORIZON = "horizon"
        TRUSTLESS_WORK = "trustless-work"
        AIRTM = "airtm"

    service = models.CharField(max_length=20, choices=Service.choices)
    method = models.CharField(max_length=10, blank=True, help_text="GET, POST… (blank: any)")
    path_contains = models.CharField(max_length=200, blank=True, help_text="blank: any path of the service")
    latency_ms = models.PositiveIntegerField(default=0, help_text="added before answering")
    status_code = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="answer this status (e.g. 500, 503, 429) instead of the real response"
    )
    after_processing = models.BooleanField(
        default=False,
        help_text="process the request for real, then answer the fault status: the client cannot tell it worked",
    )
    timeout = models.BooleanField(default=False, help_text="hold the request for timeout_seconds, then fail")
    timeout_seconds = models.FloatField(default=30.0)
    remaining = models.PositiveIntegerField(null=True, blank=True, help_text="how many requests to affect (blank: all)")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        what = f"{self.status_code}" if self.status_code else "timeout" if self.timeout else f"+{self.latency_ms} ms"
        return f"{self.service} {self.method or '*'} *{self.path_contains}*: {what}"


class SandboxEscrow(models.Model):
    """One Trustless Work escrow contract (v1), single- or multi-release. Amounts in stroops."""

    contract_id = models.CharField(max_length=56, primary_key=True)
    type = models.CharField(max_length=20)  # single-release | multi-release
    engagement_id = models.CharField(max_length=200, db_index=True)
    title = models.CharField(max_length=100)
    description = models.CharField(max_length=500)
    signer = models.CharField(max_length=56)
    roles = models.JSONField()
    amount = models.BigIntegerField(default=0, help_text="single-release only")
    platform_fee = models.DecimalField(max_digits=5, decimal_places=2, help_text="percent")
    balance = models.BigIntegerField(default=0)
    milestones = models.JSONField()
    flags = models.JSONField()
    trustline = models.JSONField()
    receiver_memo = models.BigIntegerField(default=0)
    deploy_tx_hash = models.CharField(max_length=64)
    indexed = models.BooleanField(default=True, help_text="False while the simulated indexer lags after a deploy")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.type} escrow {self.contract_id[:8]}… ({self.engagement_id})"


class SandboxEscrowCall(models.Model):
    """A write call whose unsigned transaction was handed out, applied when it comes back signed."""

    tx_hash = models.CharField(max_length=64, primary_key=True, help_text="hash of the unsigned transaction")
    call_key = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="that hash without the sequence number (the signer may change it)",
    )
    action = models.CharField(max_length=40)
    escrow_type = models.CharField(max_length=20)
    contract_id = models.CharField(max_length=56, blank=True)
    signer = models.CharField(max_length=56)
    params = models.JSONField()
    applied_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.action} {self.contract_id or '(deploy)'} by {self.signer[:8]}…"


# --- Sandbox Airtm (Enterprise API v2). Money in integer cents: Airtm speaks USD with 2 decimals.


class SandboxAirtmAccount(models.Model):
    """The enterprise (our platform's) Airtm account: one row, its balance derived from the payins
    and payouts. Locked while a payout is committed so two commits cannot overdraw it."""

    name = models.CharField(max_length=100, default="OfferHub (sandbox)")
    opening_balance_cents = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class SandboxAirtmUser(models.Model):
    """An Airtm user a payout can go to. `payout_outcome` scripts what happens to payouts sent to them."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    class PayoutOutcome(models.TextChoices):
        COMPLETE = "complete", "complete"
        FAIL = "fail", "fail (FAILED once pending)"
        USER_ACTION = "user_action", "wait for the user (PENDING_USER_ACTION)"

    airtm_id = models.CharField(max_length=36, unique=True)
    email = models.EmailField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    country = models.CharField(max_length=2, default="US")
    is_verified = models.BooleanField(default=True)
    payout_outcome = models.CharField(max_length=12, choices=PayoutOutcome.choices, default=PayoutOutcome.COMPLETE)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.email


class SandboxAirtmPayin(models.Model):
    class Status(models.TextChoices):
        CREATED = "CREATED"
        CONFIRMED = "CONFIRMED"
        CANCELED = "CANCELED"
        PROCESSING = "PROCESSING"
        FAILED = "FAILED"

    id = models.BigAutoField(primary_key=True)  # the order of the paging cursors
    airtm_id = models.CharField(max_length=36, unique=True)
    code = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CREATED)
    amount_cents = models.BigIntegerField()
    description = models.CharField(max_length=250)
    items = models.JSONField(help_text="as received, amounts in cents")
    confirmation_uri = models.URLField(max_length=2000)
    cancel_uri = models.URLField(max_length=2000)
    reason_code = models.CharField(max_length=40, blank=True)
    reason_description = models.CharField(max_length=250, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"payin {self.code} ({self.status})"


class SandboxAirtmPayout(models.Model):
    class Status(models.TextChoices):
        CREATED = "CREATED"
        COMMITTED = "COMMITTED"
        PENDING = "PENDING"
        PENDING_USER_ACTION = "PENDING_USER_ACTION"
        COMPLETED = "COMPLETED"
        CANCELED = "CANCELED"
        FAILED = "FAILED"

    id = models.BigAutoField(primary_key=True)
    airtm_id = models.CharField(max_length=36, unique=True)
    code = models.CharField(max_length=200, null=True, blank=True, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CREATED)
    recipient = models.ForeignKey(SandboxAirtmUser, on_delete=models.PROTECT, related_name="payouts")
    amount_cents = models.BigIntegerField()
    enterprise_fee_cents = models.BigIntegerField(default=0)
    airtm_fee_cents = models.BigIntegerField(default=0)
    notes = models.CharField(max_length=255)
    internal_note = models.CharField(max_length=255, blank=True)
    require_id_verified = models.BooleanField(default=False)
    reason_code = models.CharField(max_length=40, blank=True)
    reason_description = models.CharField(max_length=250, blank=True)
    next_step_at = models.DateTimeField(null=True, blank=True, help_text="when the sandbox moves it on")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"payout {self.code or self.airtm_id} to {self.recipient_id} ({self.status})"

    @property
    def debit_cents(self) -> int:
        """What leaves the enterprise balance: the amount less the enterprise's own fee, which it keeps."""
        return self.amount_cents - self.enterprise_fee_cents

    @property
    def net_cents(self) -> int:
        """What reaches the recipient: the amount less both fees."""
        return self.amount_cents - self.enterprise_fee_cents - self.airtm_fee_cents


class SandboxAirtmPayoutEvent(models.Model):
    payout = models.ForeignKey(SandboxAirtmPayout, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.payout_id} → {self.status}"


class SandboxAirtmWebhookDelivery(models.Model):
    """One Svix message: the same id and body on every attempt, signed afresh each time."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    msg_id = models.CharField(max_length=40, unique=True)
    event_type = models.CharField(max_length=40)
    resource_id = models.CharField(max_length=36, db_index=True, help_text="the payin's or payout's Airtm id")
    url = models.URLField(max_length=2000)
    payload = models.TextField(help_text="the exact body sent")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.event_type} {self.msg_id} ({self.status})"
