"""Response shapes (API.md), as TypedDicts: the JSON `data` exactly as the server sends it, keys unchanged.

Amounts are 2-decimal strings ("100.00"); timestamps ISO-8601 strings ("2026-01-12T10:00:00.000Z").
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class Money(TypedDict):
    available: str
    reserved: str
    currency: str


class User(TypedDict, total=False):
    id: str
    externalUserId: str
    email: str | None
    type: Literal["BUYER", "SELLER", "BOTH"]
    status: Literal["ACTIVE", "SUSPENDED", "PENDING_VERIFICATION"]
    balance: Money
    airtmLinked: bool
    airtmUserId: str | None
    airtmLinkedAt: str | None
    metadata: dict[str, Any] | None
    createdAt: str
    updatedAt: str


class AirtmLink(TypedDict, total=False):
    userId: str
    airtmUserId: str
    airtmLinkedAt: str
    linkedAt: str
    eligible: bool
    email: str
    airtmEmail: str


class Balance(TypedDict, total=False):
    user_id: str
    userId: str
    available: str
    reserved: str
    currency: str
    total: str
    updated_at: str
    updatedAt: str
    providerVerified: bool


class BalanceOperation(Balance, total=False):
    success: bool
    operation: Literal[
        "CREDIT_AVAILABLE", "DEBIT_AVAILABLE", "RESERVE", "RELEASE", "CANCEL_RESERVATION", "DEDUCT_RESERVED"
    ]
    amount: str
    previousBalance: dict[str, str]
    newBalance: dict[str, str]
    auditLogId: str
    balance: Balance


class BalanceSync(Balance, total=False):
    synced: bool
    localBalance: str
    providerBalance: str
    discrepancy: str
    action: Literal["none", "adjusted", "flagged"]


class Wallet(TypedDict, total=False):
    publicKey: str
    type: Literal["INVISIBLE", "EXTERNAL"]
    provider: Literal["STELLAR"]
    isActive: bool
    isPrimary: bool
    balance: dict[str, str]
    createdAt: str


class DepositAddress(TypedDict, total=False):
    provider: Literal["crypto"]
    method: Literal["stellar_address"]
    address: str
    asset: dict[str, str]
    network: Literal["testnet", "mainnet"]
    instructions: str


# Functional form: one of its keys, `from`, is a Python keyword.
WalletTransaction = TypedDict(
    "WalletTransaction",
    {
        "id": str,
        "type": Literal["payment", "create_account"],
        "from": str,
        "to": str,
        "amount": str,
        "asset": str,
        "createdAt": str,
        "hash": str,
        "successful": bool,
    },
    total=False,
)


class TopUp(TypedDict, total=False):
    id: str
    userId: str
    amount: str
    currency: str
    status: str
    airtmPayinId: str | None
    confirmationUri: str | None
    expiresAt: str | None
    failureReason: str | None
    description: str | None
    createdAt: str
    updatedAt: str


class Escrow(TypedDict, total=False):
    id: str
    orderId: str
    trustlessContractId: str | None
    status: str
    amount: str
    terms: Any
    type: Literal["single-release", "multi-release"]
    fundedAt: str | None
    releasedAt: str | None
    refundedAt: str | None
    createdAt: str
    updatedAt: str


class Milestone(TypedDict, total=False):
    id: str
    orderId: str
    milestoneRef: str
    ref: str
    title: str
    description: str
    amount: str
    status: Literal["OPEN", "COMPLETED", "RELEASED"]
    completedAt: str | None
    releasedAt: str | None
    createdAt: str
    updatedAt: str


class MilestoneInput(TypedDict, total=False):
    """One milestone of `orders.create`: `ref` (or `milestone_ref`), `title` (or `description`), `amount`."""

    ref: str
    milestone_ref: str
    title: str
    description: str
    amount: str


class Dispute(TypedDict, total=False):
    id: str
    orderId: str
    openedBy: Literal["BUYER", "SELLER"]
    reason: Literal["NOT_DELIVERED", "QUALITY_ISSUE", "OTHER"]
    evidence: list[str] | None
    status: Literal["OPEN", "UNDER_REVIEW", "RESOLVED"]
    resolutionDecision: Literal["FULL_RELEASE", "FULL_REFUND", "SPLIT"] | None
    decisionNote: str | None
    assignedTo: str | None
    releaseAmount: str | None
    refundAmount: str | None
    resolvedAt: str | None
    createdAt: str
    updatedAt: str
    order: Order


class Order(TypedDict, total=False):
    id: str
    clientOrderRef: str | None
    buyerId: str
    sellerId: str
    amount: str
    currency: str
    status: str
    title: str
    description: str | None
    metadata: dict[str, Any] | None
    escrow: Escrow | None
    milestones: list[Milestone]
    dispute: Dispute | None
    createdAt: str
    updatedAt: str


class Withdrawal(TypedDict, total=False):
    id: str
    userId: str
    amount: str
    fee: str | None
    currency: str
    status: str
    destinationType: Literal["crypto", "bank", "airtm_balance"]
    destinationRef: str
    committed: bool
    airtmPayoutId: str | None
    transactionHash: str | None
    failureReason: str | None
    createdAt: str
    updatedAt: str


class WebhookEndpoint(TypedDict, total=False):
    id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    createdAt: str
    secret: str  # only in the answer to create


class WebhookDelivery(TypedDict, total=False):
    id: str
    eventId: str
    eventType: str
    attempt: int
    status: Literal["pending", "succeeded", "failed"]
    responseStatus: int | None
    nextAttemptAt: str | None
    createdAt: str


class Deleted(TypedDict):
    id: str
    deleted: bool


class DomainEvent(TypedDict, total=False):
    eventId: str
    eventType: str
    occurredAt: str
    aggregateId: str
    aggregateType: str
    payload: dict[str, Any]
    metadata: dict[str, Any]
