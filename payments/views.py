"""The member's wallet page: balance, add funds, withdraw, history."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, Sum
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from offerhub.money import money_dollars
from payments.balances import balance_snapshot, sandbox_mint
from payments.deposits import deposits_sync
from payments.forms import SimulateDepositForm, WithdrawalForm
from payments.ledger import user_accounts
from payments.models import JournalEntry, Wallet, Withdrawal
from payments.stellar import StellarError
from payments.wallets import wallet_ensure
from payments.withdrawals import withdrawal_create_crypto

HISTORY_LABELS = {
    "deposit": "Funds added",
    "adjustment_credit": "Credit from support",
    "adjustment_debit": "Debit by support",
    "hold_reserve": "Put on hold",
    "hold_void": "Hold released",
    "withdrawal": "Withdrawal",
    "release": "Payment",
    "burn": "Debit by support",
    "escrow_fund": "Paid into an order's escrow",
    "escrow_payout": "Paid out from an order's escrow",
}
# Entries that only move a withdrawal's own money between available and on hold: the
# withdrawal's row says it all.
_WITHDRAWAL_HOLD_KINDS = {"hold_reserve", "hold_void"}


def _history(user, page_number):
    """One row per movement of the member's money, newest first."""
    available, held = user_accounts(user)
    entries = (
        JournalEntry.objects.filter(postings__account__in=[available, held])
        .values("id", "kind", "created_at", "metadata")
        .annotate(
            available_delta=Sum("postings__amount", filter=Q(postings__account=available), default=0),
            held_delta=Sum("postings__amount", filter=Q(postings__account=held), default=0),
        )
        .exclude(kind__in=_WITHDRAWAL_HOLD_KINDS, metadata__reference__startswith="wd_")
        .order_by("-id")
    )
    page = Paginator(entries, 20).get_page(page_number)
    references = {row["metadata"].get("reference") for row in page.object_list} - {None}
    withdrawals = {w.hold_reference: w for w in Withdrawal.objects.filter(hold_reference__in=references)}
    rows = []
    for row in page.object_list:
        label = HISTORY_LABELS.get(row["kind"], row["kind"].replace("_", " ").capitalize())
        total = row["available_delta"] + row["held_delta"]
        withdrawal = withdrawals.get(row["metadata"].get("reference"))
        if withdrawal is not None and row["kind"] in ("withdrawal", "release", "burn"):
            label = f"{label} to {withdrawal.destination_ref[:4]}…{withdrawal.destination_ref[-4:]}"
        elif row["kind"] in _WITHDRAWAL_HOLD_KINDS:
            label = f"{label} for {row['metadata'].get('reference', 'an order')}"
        rows.append(
            {
                "when": row["created_at"],
                "label": label,
                # A hold moves money without changing the total: show what moved, as "on hold".
                "amount": money_dollars(total if total else row["held_delta"]),
                "on_hold": total == 0,
            }
        )
    return page, rows


@login_required
def wallet_page(request):
    user = request.user
    wallet = wallet_ensure(user=user)  # a new wallet is activated in the background
    wallet.refresh_from_db()  # in embedded mode that already happened, after commit
    snapshot = balance_snapshot(user=user)
    page, rows = _history(user, request.GET.get("page"))
    in_progress = Withdrawal.objects.filter(
        user=user, status__in=[Withdrawal.Status.COMMITTED, Withdrawal.Status.PENDING], purpose="withdrawal"
    ).order_by("-id")
    context = {
        "wallet": wallet,
        "in_progress": [
            {
                "amount": money_dollars(w.amount),
                "to": f"{w.destination_ref[:4]}…{w.destination_ref[-4:]}",
                "since": w.created_at,
            }
            for w in in_progress
        ],
        "available": money_dollars(snapshot.available),
        "on_hold": money_dollars(snapshot.reserved),
        "history": rows,
        "page": page,
        "withdrawal_form": WithdrawalForm(),
        "simulate_form": SimulateDepositForm() if "stellar" in settings.SANDBOX_PROVIDERS else None,
        "usdc_issuer": settings.STELLAR_USDC_ISSUER,
        "network": settings.STELLAR_NETWORK,
    }
    if request.method == "POST":
        form = WithdrawalForm(request.POST)
        context["withdrawal_form"] = form
        if form.is_valid():
            try:
                withdrawal = withdrawal_create_crypto(
                    user=user,
                    amount=form.cleaned_data["amount"],
                    destination=form.cleaned_data["destination"].strip(),
                    memo=form.cleaned_data["memo"],
                    actor_type=AuditLog.ActorType.USER,
                    actor_id=user.public_id,
                )
            except StellarError:  # before ServiceError, of which it is one
                form.add_error(None, "We could not reach the payment network. Nothing was withdrawn; try again.")
            except ServiceError as error:
                field = {"destinationRef": "destination", "amount": "amount", "memo": "memo"}.get(error.field)
                form.add_error(field, error.message)
            else:
                if withdrawal.status == withdrawal.Status.COMPLETED:
                    messages.success(request, f"${form.cleaned_data['amount']:,.2f} was sent to the destination.")
                elif withdrawal.status == withdrawal.Status.FAILED:
                    messages.error(request, f"The withdrawal failed: {withdrawal.failure_reason} Your funds are back.")
                else:
                    messages.info(request, "Your withdrawal is being processed; its amount stays on hold meanwhile.")
                return redirect("wallet")
        return render(request, "payments/wallet.html", context, status=200)
    return render(request, "payments/wallet.html", context)


@login_required
@require_POST
def simulate_deposit(request):
    """Sandbox only: mint test dollars into the member's wallet, as a real deposit would arrive."""
    if "stellar" not in settings.SANDBOX_PROVIDERS:
        return redirect("wallet")
    form = SimulateDepositForm(request.POST)
    wallet = Wallet.objects.filter(user=request.user, status=Wallet.Status.ACTIVE).first()
    if form.is_valid() and wallet is not None:
        try:
            sandbox_mint(wallet, int(form.cleaned_data["amount"] * 10_000_000))
            deposits_sync()
        except ServiceError:  # StellarError is one
            messages.error(request, "The sandbox could not simulate the deposit right now; try again.")
        else:
            messages.success(request, f"Simulated a deposit of ${form.cleaned_data['amount']:,.2f}.")
    else:
        problems = form.errors.get("amount") or ["Your account is still being set up; try again in a moment."]
        messages.error(request, problems[0])
    return redirect("wallet")
