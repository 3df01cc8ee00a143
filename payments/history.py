"""The member's wallet history: one row per ledger entry that touched their money.

Each row says what happened in plain words, how it changed the member's available and
on-hold balances, and the balances after it, so the rows add up to the balance the page
shows. The words come from the entry's kind, its postings (whose escrow, who else was
paid) and the order or payment it belongs to, all read in a bounded number of queries.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.core.paginator import Page, Paginator
from django.db.models import Q, Sum

from offerhub.money import money_dollars
from payments.ledger import user_accounts
from payments.models import JournalEntry, LedgerAccount, Posting, Withdrawal

Kind = LedgerAccount.Kind
PAGE_SIZE = 20
# Accounts that receive an escrow payout for a person (ours or someone outside).
_RECEIVER_KINDS = (Kind.USER_AVAILABLE, Kind.EXTERNAL_STELLAR)


@dataclass(frozen=True)
class OrderRef:
    """What the history needs of an order the member takes part in."""

    title: str
    url: str
    is_buyer: bool
    canceled: bool


# Callables (user, references: set[str]) -> dict[reference, OrderRef] for the references that
# are orders `user` is a party to. The marketplace registers one at start-up (payments must not
# import marketplace); without it the rows still say what happened, without the order's name.
order_lookups: list = []


@dataclass
class HistoryRow:
    """One movement. `direction`: in (+), out (minus), to_hold (available to on hold) or
    from_hold (on hold to available); `amount` its size in dollars, without a sign."""

    when: object
    label: str
    detail: str
    order_url: str
    direction: str
    amount: Decimal
    available_after: Decimal
    held_after: Decimal


@dataclass
class History:
    page: Page
    rows: list[HistoryRow]
    available_before: Decimal  # the balances before the oldest row on this page
    held_before: Decimal


def _short(address: str) -> str:
    return f"{address[:4]}\u2026{address[-4:]}" if len(address) > 12 else address


def _order_words(order: OrderRef | None, reference: str) -> str:
    if order is not None:
        return f"order \u201c{order.title}\u201d"
    return f"order {reference}" if reference else "an order"


def history_page(*, user, page_number) -> History:
    """The member's history page `page_number` (newest first), each row with the balances after it."""
    available, held = user_accounts(user)
    entries = (
        JournalEntry.objects.filter(postings__account__in=[available, held])
        .values("id", "kind", "created_at", "metadata")
        .annotate(
            available_delta=Sum("postings__amount", filter=Q(postings__account=available), default=0),
            held_delta=Sum("postings__amount", filter=Q(postings__account=held), default=0),
        )
        .order_by("-id")
    )
    page = Paginator(entries, PAGE_SIZE).get_page(page_number)
    raw = list(page.object_list)
    if not raw:
        return History(page, [], Decimal("0.00"), Decimal("0.00"))

    # Everything older than this page, summed: where its running balances start.
    before = Posting.objects.filter(account__in=[available, held], entry_id__lt=raw[-1]["id"]).aggregate(
        available=Sum("amount", filter=Q(account=available), default=0),
        held=Sum("amount", filter=Q(account=held), default=0),
    )
    # The other side of each entry: which escrow paid or was funded, who else was paid.
    others: dict[int, list[tuple[str, str, int]]] = {}
    for entry_id, kind, reference, amount in (
        Posting.objects.filter(entry_id__in=[row["id"] for row in raw])
        .exclude(account__in=[available, held])
        .values_list("entry_id", "account__kind", "account__reference", "amount")
    ):
        others.setdefault(entry_id, []).append((kind, reference, amount))

    def escrow_reference(entry_id: int) -> str:
        return next((reference for kind, reference, _ in others.get(entry_id, []) if kind == Kind.ESCROW), "")

    references = {row["metadata"].get("reference") for row in raw} | {escrow_reference(row["id"]) for row in raw}
    references -= {None, ""}
    payments = {w.hold_reference: w for w in Withdrawal.objects.filter(user=user, hold_reference__in=references)}
    orders: dict[str, OrderRef] = {}
    order_references = references - set(payments)
    for lookup in order_lookups:
        orders |= lookup(user, order_references)

    rows = []
    running_available, running_held = before["available"], before["held"]
    shown_available, shown_held = money_dollars(running_available), money_dollars(running_held)
    for row in reversed(raw):  # oldest first, to run the balances forward
        running_available += row["available_delta"]
        running_held += row["held_delta"]
        # Balances are shown rounded down to the cent, as at the top of the page; a row's amount
        # is what it changed in those shown balances, so the rows add up to the cent (a fraction
        # of a cent carries over to the next row instead of going missing).
        available_after, held_after = money_dollars(running_available), money_dollars(running_held)
        available_change, held_change = available_after - shown_available, held_after - shown_held
        shown_available, shown_held = available_after, held_after
        total = row["available_delta"] + row["held_delta"]
        direction = "in" if total > 0 else "out" if total < 0 else "to_hold" if row["held_delta"] > 0 else "from_hold"
        amount = abs(available_change + held_change) if total else abs(held_change)
        reference = row["metadata"].get("reference") or escrow_reference(row["id"])
        order = orders.get(reference)
        label, detail = _describe(row, reference, order, payments.get(reference), others.get(row["id"], []), amount)
        rows.append(
            HistoryRow(
                when=row["created_at"],
                label=label,
                detail=detail,
                order_url=order.url if order is not None else "",
                direction=direction,
                amount=amount,
                available_after=available_after,
                held_after=held_after,
            )
        )
    rows.reverse()
    return History(page, rows, money_dollars(before["available"]), money_dollars(before["held"]))


def _describe(row: dict, reference: str, order: OrderRef | None, payment, others, shown: Decimal) -> tuple[str, str]:
    """(what happened, a detail line) for one entry, in the member's words; `shown` is the amount
    the row shows."""
    kind = row["kind"]
    metadata = row["metadata"]
    incoming = row["available_delta"] + row["held_delta"] > 0
    if payment is not None:
        return _describe_payment(kind, payment, incoming)
    if kind == "hold_reserve":
        return f"Money on hold for {_order_words(order, reference)}", ""
    if kind == "hold_void":
        if order is not None and order.canceled:
            return f"Hold released: {_order_words(order, reference)} canceled", ""
        return f"Hold released for {_order_words(order, reference)}", ""
    if kind == "escrow_fund":
        return f"Escrow funded for {_order_words(order, reference)}", "Paid from your hold into the order's escrow."
    if kind == "escrow_payout":
        return _describe_payout(order, reference, others, shown)
    if kind == "deposit":
        return "Deposit", ""
    if kind == "adjustment_credit":
        return "Credit from support", metadata.get("reason", "")
    if kind == "adjustment_debit":
        return "Debit by support", metadata.get("reason", "")
    if kind == "release":  # the balance API's release, paid to this member's wallet
        return ("Payment received from another member", "") if incoming else ("Payment to another member", "")
    return kind.replace("_", " ").capitalize(), ""


def _describe_payment(kind: str, payment: Withdrawal, incoming: bool) -> tuple[str, str]:
    """A withdrawal, a release or a support debit: its money is held first, then sent (or given back).
    A top-up's bridge is the one that comes in: the dollars paid at Airtm, arrived as USDC."""
    if payment.purpose == Withdrawal.Purpose.BRIDGE:
        return "Added with Airtm", f"Top-up {payment.hold_reference}, paid at Airtm."
    if payment.purpose == Withdrawal.Purpose.BURN:
        what = "Debit by support"
    elif payment.purpose == Withdrawal.Purpose.RELEASE:
        what = f"Payment to {_short(payment.destination_ref)}"
    elif payment.through_airtm:
        what = "Withdrawal to Airtm"
    else:
        what = f"Withdrawal to {_short(payment.destination_ref)}"
    if kind == "hold_reserve":
        return what, "On hold while it is sent."
    if kind == "hold_void" and payment.status == Withdrawal.Status.CANCELED:
        return f"{what} canceled: money back", payment.failure_reason
    if kind == "hold_void":
        return f"{what} failed: money back", payment.failure_reason
    return what, "Sent."


def _describe_payout(order: OrderRef | None, reference: str, others, received: Decimal) -> tuple[str, str]:
    """An escrow paid this member: a release to the seller, a refund to the buyer, or a dispute's split."""
    receivers = [amount for kind, _, amount in others if kind in _RECEIVER_KINDS and amount > 0]
    paid_out = -sum(amount for kind, _, amount in others if kind == Kind.ESCROW)
    words = _order_words(order, reference)
    if receivers:  # someone else was paid by the same resolution: a split
        return f"Dispute split: your share of {words}", "Your share, less its part of the escrow fees."
    fees = money_dollars(paid_out) - received
    detail = f"${money_dollars(paid_out):,.2f} from the escrow, less ${fees:,.2f} in escrow fees."
    if order is None:  # an escrow opened through the API without an order of ours
        return f"Paid to you from the escrow of {words}", detail
    if order.is_buyer:
        return f"Refunded to you from {words}", detail
    return f"Paid to you for {words}", detail
