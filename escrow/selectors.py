"""Reads for the public escrow viewer, shared by the web page and the API.

The contract itself is read from Trustless Work (`validateOnChain=true`), so any contract
id works, ours or not. When the contract is one of ours (`Escrow.contract_id`), our
records add our status and the on-chain timeline (the confirmed `EscrowStep` rows with
their transaction hashes). Everything else comes from the chain.

What is private stays with the order's side: the participants' names and the delivery
evidence (the seller's note and link, which the contract's milestones carry) are shown
only to the order's buyer and seller, support staff, and API keys of the marketplace that
owns the order. Anyone else sees amounts, roles as addresses, milestone titles and
statuses, fees and transactions.

Reads are cached for a few seconds per contract id (found or not): the page is public and
Trustless Work allows 50 requests a minute to the whole installation, step runner included.

Also here: the backoffice's steps that need attention (`steps_needing_attention`).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.conf import settings
from django.core.cache import cache
from stellar_sdk import StrKey

from escrow.client import TrustlessWorkClient, TrustlessWorkError
from escrow.models import Escrow, EscrowStep
from escrow.services import TRUSTLESS_WORK_FEE_BPS, escrow_fees
from offerhub.money import STROOPS_PER_UNIT, money_dollars, money_from_stroops
from payments.models import PlatformAccount, PlatformSigner, Wallet

logger = logging.getLogger(__name__)

CONTRACT_CACHE_SECONDS = 10
VIEWER_ATTEMPTS = 2  # a person is waiting: one retry, not the runner's four
VIEWER_TIMEOUT_SECONDS = 10
PLATFORM_NAME = "OfferHub (platform)"
PROVIDER_CODES = ("PROVIDER_ERROR", "PROVIDER_TIMEOUT", "PROVIDER_RATE_LIMITED", "PROVIDER_UNAVAILABLE")

# Trustless Work roles, in the order the viewer lists them: (key, name, what it does).
ROLES = (
    ("approver", "Approver", "approves each milestone"),
    ("serviceProvider", "Service provider", "delivers the work and reports progress"),
    ("receiver", "Receiver", "is paid when funds are released"),
    ("releaseSigner", "Release signer", "releases the funds"),
    ("disputeResolver", "Dispute resolver", "settles disputes"),
    ("platformAddress", "Platform", "receives the platform fee and may update the escrow"),
)
# Trustless Work's status vocabulary (its `status` filter), derived from the flags.
CHAIN_STATUS_LABELS = {
    "unfunded": "Waiting for funding",
    "working": "Funded · work in progress",
    "pendingRelease": "Approved · ready to release",
    "inDispute": "In dispute",
    "released": "Released",
    "resolved": "Resolved",
}


class EscrowServiceUnavailable(Exception):
    """Trustless Work could not be read (down, timing out, throttling, or answering nonsense)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code if code in PROVIDER_CODES else "PROVIDER_ERROR"
        self.message = message


@dataclass(frozen=True)
class Usd:
    """An amount in stroops, shown as dollars rounded down to the cent (never more than there is)."""

    stroops: int

    @property
    def dollars(self) -> Decimal:
        return money_dollars(self.stroops)

    @property
    def money(self) -> str:
        """The API's money string, "12.50"."""
        return money_from_stroops(self.stroops)


@dataclass(frozen=True)
class Party:
    role: str  # Trustless Work's key: approver, serviceProvider, …
    title: str
    duty: str
    address: str
    name: str | None = None  # our user's display name, or PLATFORM_NAME; None if not ours
    relation: str = ""  # "buyer" / "seller" on our escrows

    @property
    def short_address(self) -> str:
        return short_address(self.address)

    @property
    def display(self) -> str:
        return self.name or self.short_address


@dataclass(frozen=True)
class MilestoneView:
    index: int
    description: str
    status: str
    evidence: str  # "" when hidden from this reader
    approved: bool
    amount: Usd | None = None  # multi-release only
    flags: dict | None = None  # multi-release only
    receiver: Party | None = None  # multi-release only
    evidence_hidden: bool = False  # the contract holds evidence this reader may not see

    @property
    def number(self) -> int:
        return self.index + 1


@dataclass(frozen=True)
class FeeView:
    amount: Usd
    trustless_work: Usd
    platform: Usd
    net: Usd
    platform_percent: Decimal
    trustless_work_percent: Decimal = Decimal(TRUSTLESS_WORK_FEE_BPS) / 100

    @property
    def platform_percent_text(self) -> str:
        return percent_text(self.platform_percent)

    @property
    def trustless_work_percent_text(self) -> str:
        return percent_text(self.trustless_work_percent)


@dataclass(frozen=True)
class TimelineEntry:
    action: str
    text: str
    when: datetime | None
    tx_hash: str
    milestone_index: int | None = None


@dataclass(frozen=True)
class EscrowView:
    contract_id: str
    type: str  # single-release | multi-release
    title: str
    description: str
    engagement_id: str
    amount: Usd
    balance: Usd
    chain_status: str  # a key of CHAIN_STATUS_LABELS
    flags: dict | None  # single-release only; multi-release keeps flags per milestone
    parties: list[Party]
    milestones: list[MilestoneView]
    fees: FeeView
    asset: dict = field(default_factory=dict)  # the trustline: {address, name}
    escrow: Escrow | None = None  # our record, when the contract is ours
    timeline: list[TimelineEntry] | None = None  # None: not ours, so unknown
    private: bool = False  # shows the names and the delivery evidence (the reader is on the order's side)

    @property
    def is_ours(self) -> bool:
        return self.escrow is not None

    @property
    def is_multi(self) -> bool:
        return self.type == Escrow.Type.MULTI

    @property
    def chain_status_label(self) -> str:
        return CHAIN_STATUS_LABELS.get(self.chain_status, self.chain_status)


def short_address(address: str) -> str:
    """GABC…WXYZ: enough to recognise an account, short enough to read."""
    return f"{address[:4]}…{address[-4:]}" if len(address) > 12 else address


def percent_text(value: Decimal) -> str:
    return f"{value.normalize():f}"


def contract_id_is_valid(contract_id) -> bool:
    """A Stellar contract strkey (C…, 56 characters, checksum included)."""
    return isinstance(contract_id, str) and len(contract_id) == 56 and StrKey.is_valid_contract(contract_id)


def viewer_client() -> TrustlessWorkClient:
    return TrustlessWorkClient(
        attempts=VIEWER_ATTEMPTS, timeout=min(settings.TRUSTLESS_WORK_TIMEOUT_SECONDS, VIEWER_TIMEOUT_SECONDS)
    )


# --- The chain's side -------------------------------------------------------------------


def _cache_key(contract_id: str) -> str:
    return f"escrow-viewer:{contract_id}"


def _cache_get(contract_id: str):
    try:
        return cache.get(_cache_key(contract_id))
    except Exception:  # the cache is an optimisation: a Redis outage must not hide the escrow
        logger.warning("escrow viewer cache unavailable", exc_info=True)
        return None


def _cache_set(contract_id: str, value: dict) -> None:
    try:
        cache.set(_cache_key(contract_id), value, CONTRACT_CACHE_SECONDS)
    except Exception:
        logger.warning("escrow viewer cache unavailable", exc_info=True)


def contract_forget(contract_id: str) -> None:
    """Drop the cached read once one of our steps changed the contract."""
    try:
        cache.delete(_cache_key(contract_id))
    except Exception:
        logger.warning("escrow viewer cache unavailable", exc_info=True)


def contract_read(*, contract_id: str, client: TrustlessWorkClient | None = None) -> dict | None:
    """The contract as Trustless Work's indexer shows it, validated on chain; None if unknown."""
    cached = _cache_get(contract_id)
    if cached is not None:
        return cached or None  # {} remembers "not found"
    try:
        found = (client or viewer_client()).get_escrows([contract_id], validate_on_chain=True)
    except TrustlessWorkError as error:
        if error.code == "ESCROW_NOT_FOUND" or error.status == 404:
            found = []
        else:
            raise EscrowServiceUnavailable(error.code, error.message) from None
    if not isinstance(found, list):
        raise EscrowServiceUnavailable("PROVIDER_ERROR", "Trustless Work answered something that is not a list")
    chain = next(
        (item for item in found if isinstance(item, dict) and item.get("contractId", contract_id) == contract_id),
        None,
    )
    _cache_set(contract_id, chain or {})
    return chain


def _stroops(value) -> int:
    """A Trustless Work amount (a JSON number in token units) in stroops, rounded down."""
    if value is None or isinstance(value, bool):
        return 0
    return int((Decimal(str(value)) * STROOPS_PER_UNIT).to_integral_value(rounding=ROUND_DOWN))


def _percent(value) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") and not isinstance(value, bool) else Decimal(0)


def _escrow_type(chain: dict, escrow: Escrow | None) -> str:
    if escrow is not None:
        return escrow.type
    if chain.get("type") in Escrow.Type.values:
        return chain["type"]
    milestones = chain.get("milestones") or []
    multi = "amount" not in chain and any(isinstance(m, dict) and "amount" in m for m in milestones)
    return Escrow.Type.MULTI if multi else Escrow.Type.SINGLE


def chain_status(*, multi: bool, balance: int, flags: dict, milestones: list[MilestoneView]) -> str:
    """Trustless Work's status words (`working`, `pendingRelease`, …), plus `unfunded`."""
    if multi:
        milestone_flags = [m.flags or {} for m in milestones]
        if milestone_flags and all(f.get("released") or f.get("resolved") for f in milestone_flags):
            return "resolved" if any(f.get("resolved") for f in milestone_flags) else "released"
        if any(f.get("disputed") for f in milestone_flags):
            return "inDispute"
        paid = any(f.get("released") or f.get("resolved") for f in milestone_flags)
    else:
        if flags.get("resolved"):
            return "resolved"
        if flags.get("released"):
            return "released"
        if flags.get("disputed"):
            return "inDispute"
        paid = False
    if balance == 0 and not paid:
        return "unfunded"
    unpaid = [m for m in milestones if not ((m.flags or {}).get("released") or (m.flags or {}).get("resolved"))]
    return "pendingRelease" if unpaid and all(m.approved for m in unpaid) else "working"


# --- Our side ---------------------------------------------------------------------------


def _names(
    escrow: Escrow | None, addresses: set[str], marketplace_id: str | None, private: bool
) -> dict[str, tuple[str, str]]:
    """address → (name, relation) for our escrows: the platform, and our users' wallets for
    a reader on the order's side."""
    if escrow is None:
        return {}
    names = {}
    if private:
        wallets = Wallet.objects.filter(public_key__in=addresses).select_related("user")
        if marketplace_id:
            wallets = wallets.filter(user__marketplace_id=marketplace_id)
        relation = {escrow.buyer_id: "buyer", escrow.seller_id: "seller"}
        names = {w.public_key: (w.user.display_name, relation.get(w.user_id, "")) for w in wallets}
    # The treasury and the signer pool are all the platform's (one query for both).
    treasury = PlatformAccount.objects.filter(public_key__in=addresses).values_list("public_key")
    signers = PlatformSigner.objects.filter(public_key__in=addresses).values_list("public_key")
    for (platform,) in treasury.union(signers, all=True):
        names[platform] = (PLATFORM_NAME, "")
    return names


def _who(escrow: Escrow, address: str) -> str:
    if address == escrow.roles.get("approver"):
        return "the buyer"
    if address == escrow.roles.get("serviceProvider"):
        return "the seller"
    return "OfferHub"


def _step_text(escrow: Escrow, step: EscrowStep) -> str:
    """What a confirmed call did, in words."""
    Action = EscrowStep.Action
    milestone = f"Milestone {step.milestone_index + 1}" if step.milestone_index is not None else "The escrow"
    action = step.action
    if action == Action.DEPLOY:
        return "Escrow contract deployed by OfferHub"
    if action == Action.FUND:
        amount = Usd(int(step.params.get("amount", 0)))
        return f"Funded by the buyer (${amount.dollars:,})"
    if action == Action.MILESTONE_STATUS:
        return f"{milestone} marked “{step.params.get('status', '')}” by the seller"
    if action == Action.APPROVE:
        return f"{milestone} approved by the buyer"
    if action == Action.RELEASE:
        return "Funds released to the seller"
    if action == Action.RELEASE_MILESTONE:
        return f"{milestone} paid to the seller"
    if action in (Action.DISPUTE, Action.DISPUTE_MILESTONE):
        subject = "Dispute" if action == Action.DISPUTE else f"{milestone}: dispute"
        return f"{subject} opened by {_who(escrow, step.signer)}"
    shares = [(_who(escrow, address), Usd(int(amount))) for address, amount in step.params.get("distributions", [])]
    split = ", ".join(f"${amount.dollars:,} to {who}" for who, amount in shares)
    subject = "Dispute" if action == Action.RESOLVE else f"{milestone}: dispute"
    return f"{subject} resolved by OfferHub: {split}" if split else f"{subject} resolved by OfferHub"


def _timeline(escrow: Escrow) -> list[TimelineEntry]:
    steps = escrow.steps.filter(status=EscrowStep.Status.CONFIRMED).order_by("confirmed_at", "pk")
    return [
        TimelineEntry(
            action=step.action,
            text=_step_text(escrow, step),
            when=step.confirmed_at,
            tx_hash=step.tx_hash,
            milestone_index=step.milestone_index,
        )
        for step in steps
    ]


# --- Together ---------------------------------------------------------------------------


def escrow_public_view(
    *,
    contract_id: str,
    marketplace_id: str | None = None,
    user=None,
    client: TrustlessWorkClient | None = None,
) -> EscrowView | None:
    """Any escrow contract, as the viewer shows it to this reader; None if the id is
    malformed (the provider is not asked) or no such contract exists.

    The reader: an API key gives its tenant as `marketplace_id` ("" for a key bound to no
    marketplace, API.md §1.10). A key reads for its marketplace, so it sees the names and
    delivery evidence of that marketplace's escrows; other tenants' escrows are foreign to
    it (the chain's public data only). A web reader is `user` (possibly anonymous): the
    order's buyer and seller and support staff see the private side. Neither: anonymous.
    Raises `EscrowServiceUnavailable` when Trustless Work cannot be read."""
    if not contract_id_is_valid(contract_id):
        return None
    chain = contract_read(contract_id=contract_id, client=client)
    if chain is None:
        return None
    escrow = Escrow.objects.select_related("buyer").filter(contract_id=contract_id).first()
    if escrow is not None and marketplace_id and escrow.buyer.marketplace_id != marketplace_id:
        escrow = None
    private = escrow is not None and (marketplace_id is not None or _on_the_order_side(escrow, user))
    try:
        return _build(chain, contract_id, escrow, marketplace_id, private)
    except (InvalidOperation, ValueError, TypeError, AttributeError) as error:
        logger.warning("unexpected escrow shape from Trustless Work for %s: %s", contract_id, error)
        raise EscrowServiceUnavailable("PROVIDER_ERROR", "Trustless Work answered an escrow we cannot read") from None


def _on_the_order_side(escrow: Escrow, user) -> bool:
    if user is None or not user.is_authenticated:
        return False
    return user.pk in (escrow.buyer_id, escrow.seller_id) or user.is_support


def _build(
    chain: dict, contract_id: str, escrow: Escrow | None, marketplace_id: str | None, private: bool
) -> EscrowView:
    escrow_type = _escrow_type(chain, escrow)
    multi = escrow_type == Escrow.Type.MULTI
    roles = {key: value for key, value in (chain.get("roles") or {}).items() if isinstance(value, str) and value}
    raw_milestones = [m for m in chain.get("milestones") or [] if isinstance(m, dict)]
    addresses = set(roles.values()) | {m["receiver"] for m in raw_milestones if isinstance(m.get("receiver"), str)}
    names = _names(escrow, addresses, marketplace_id, private)

    def party(role: str, title: str, duty: str, address: str) -> Party:
        name, relation = names.get(address, (None, ""))
        return Party(role=role, title=title, duty=duty, address=address, name=name, relation=relation)

    parties = [party(key, title, duty, roles[key]) for key, title, duty in ROLES if key in roles]
    known = {key for key, _, _ in ROLES}
    parties += [party(key, key, "", address) for key, address in roles.items() if key not in known]

    milestones = []
    for index, raw in enumerate(raw_milestones):
        flags = raw.get("flags") if isinstance(raw.get("flags"), dict) else None
        receiver = raw.get("receiver") if isinstance(raw.get("receiver"), str) else None
        evidence = str(raw.get("evidence") or "")
        milestones.append(
            MilestoneView(
                index=index,
                description=str(raw.get("description") or ""),
                status=str(raw.get("status") or "pending"),
                evidence=evidence if private else "",
                evidence_hidden=bool(evidence) and not private,
                approved=bool(raw.get("approved") or (flags or {}).get("approved")),
                amount=Usd(_stroops(raw.get("amount"))) if multi else None,
                flags=flags if multi else None,
                receiver=party("receiver", "Receiver", "", receiver) if multi and receiver else None,
            )
        )

    platform_percent = _percent(chain.get("platformFee"))
    if multi:
        parts = [escrow_fees(amount=m.amount.stroops, platform_fee_percent=platform_percent) for m in milestones]
        amount = sum(m.amount.stroops for m in milestones)
        fees = FeeView(
            amount=Usd(amount),
            trustless_work=Usd(sum(p.trustless_work for p in parts)),
            platform=Usd(sum(p.platform for p in parts)),
            net=Usd(sum(p.net for p in parts)),
            platform_percent=platform_percent,
        )
    else:
        amount = _stroops(chain.get("amount"))
        part = escrow_fees(amount=amount, platform_fee_percent=platform_percent)
        fees = FeeView(
            amount=Usd(amount),
            trustless_work=Usd(part.trustless_work),
            platform=Usd(part.platform),
            net=Usd(part.net),
            platform_percent=platform_percent,
        )
    flags = None if multi else {k: bool(v) for k, v in (chain.get("flags") or {}).items()}
    balance = _stroops(chain.get("balance"))
    trustline = chain.get("trustline") if isinstance(chain.get("trustline"), dict) else {}
    return EscrowView(
        contract_id=contract_id,
        type=escrow_type,
        title=str(chain.get("title") or ""),
        description=str(chain.get("description") or ""),
        engagement_id=str(chain.get("engagementId") or ""),
        amount=Usd(amount),
        balance=Usd(balance),
        chain_status=chain_status(multi=multi, balance=balance, flags=flags or {}, milestones=milestones),
        flags=flags,
        parties=parties,
        milestones=milestones,
        fees=fees,
        asset={"address": str(trustline.get("address") or ""), "name": str(trustline.get("name") or "USDC")},
        escrow=escrow,
        timeline=_timeline(escrow) if escrow is not None else None,
        private=private,
    )


def steps_needing_attention(steps=None):
    """Open steps whose runs failed ESCROW_STEP_ATTENTION_AFTER times or more (the backoffice's
    "needs attention"): they keep retrying with back-off, but support should look."""
    steps = EscrowStep.objects.all() if steps is None else steps
    return steps.filter(status__in=EscrowStep.OPEN, failures__gte=settings.ESCROW_STEP_ATTENTION_AFTER)
