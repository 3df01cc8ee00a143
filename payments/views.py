"""The member's wallet page: balance, add funds (deposit or Airtm top-up), withdraw, history."""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from offerhub.money import money_dollars
from payments.airtm_withdrawals import (
    AIRTM_TYPES,
    withdrawal_cancel_airtm,
    withdrawal_cancelable,
    withdrawal_create_airtm,
)
from payments.balances import balance_snapshot, sandbox_mint, sandbox_recipient_create
from payments.deposits import deposits_sync
from payments.forms import AirtmWithdrawalForm, SimulateDepositForm, TopupForm, WithdrawalForm
from payments.history import history_page
from payments.models import Topup, Wallet, Withdrawal
from payments.providers import payments_rails, rail_enabled
from payments.stellar import StellarError
from payments.topups import topup_cancel, topup_create, topup_page_url, topup_refresh_throttled
from payments.wallets import wallet_ensure
from payments.withdrawals import withdrawal_check_crypto, withdrawal_create_crypto

logger = logging.getLogger(__name__)
TOPUP_RETURNS_KEPT = 10  # the session remembers where the last few top-ups were started from


def safe_next(value: str | None) -> str:
    """A page of this site to come back to after adding funds (`?next=`), or "": only a local
    path (never another host, scheme or `//host`), so the parameter cannot send anyone away."""
    value = (value or "").strip()
    if not value.startswith("/") or value.startswith("//") or "\\" in value or len(value) > 500:
        return ""
    return value if url_has_allowed_host_and_scheme(value, allowed_hosts=set()) else ""


def _back_or_wallet(next_url: str):
    return redirect(next_url) if next_url else redirect("wallet")


@login_required
def wallet_page(request):
    user = request.user
    wallet = wallet_ensure(user=user)  # a new wallet is activated in the background
    wallet.refresh_from_db()  # in embedded mode that already happened, after commit
    snapshot = balance_snapshot(user=user)
    history = history_page(user=user, page_number=request.GET.get("page"))
    in_progress = Withdrawal.objects.filter(
        user=user,
        status__in=[Withdrawal.Status.COMMITTED, Withdrawal.Status.PENDING],
        purpose="withdrawal",
        destination_type=Withdrawal.DestinationType.CRYPTO,  # Airtm ones have their own list
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
        "history": history.rows,
        "history_start": history,  # the balances before the oldest row shown
        "page": history.page,
        # A test address made by the sandbox button comes back filled in.
        "withdrawal_form": WithdrawalForm(initial={"destination": request.GET.get("destination", "")[:56]}),
        "simulate_form": SimulateDepositForm() if "stellar" in settings.SANDBOX_PROVIDERS else None,
        "topup_form": TopupForm() if user.airtm_user_id and rail_enabled("airtm") else None,
        "usdc_issuer": settings.STELLAR_USDC_ISSUER,
        "network": settings.STELLAR_NETWORK,
        "rails": payments_rails(),  # what OFFERHUB_PAYMENTS_PROVIDER offers: "crypto", "airtm"
        # Came to add funds from a checkout: the deposit and top-up forms bring the member back there.
        "next_url": safe_next(request.GET.get("next") or request.POST.get("next")),
    }
    context.update(_airtm_withdraw_context(user))
    if request.method == "POST" and request.POST.get("form") == "airtm-withdraw":
        return _airtm_withdraw(request, context)
    if request.method == "POST" and "crypto" in context["rails"]:  # the crypto withdrawal form
        form = WithdrawalForm(request.POST)
        context["withdrawal_form"] = form
        if form.is_valid() and request.POST.get("confirmed") != "yes":
            # Money sent on chain cannot come back: check everything, then ask once more.
            try:
                withdrawal_check_crypto(
                    user=user,
                    amount=form.cleaned_data["amount"],
                    destination=form.cleaned_data["destination"].strip(),
                    memo=form.cleaned_data["memo"],
                )
            except StellarError:
                form.add_error(None, "We could not reach the payment network. Nothing was withdrawn; try again.")
            except ServiceError as error:
                field = {"destinationRef": "destination", "amount": "amount", "memo": "memo"}.get(error.field)
                form.add_error(field, error.message)
            else:
                return _withdraw_confirm(request, form)
        elif form.is_valid():
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


def _withdraw_confirm(request, form: WithdrawalForm):
    amount, destination = form.cleaned_data["amount"], form.cleaned_data["destination"].strip()
    memo = form.cleaned_data["memo"]
    return _confirm_page(
        request,
        heading="Send this withdrawal?",
        summary=f"${amount:,.2f} leaves your balance for the Stellar address {destination[:4]}…{destination[-4:]}.",
        rows=[("Amount", f"${amount:,.2f}"), ("To", destination)] + ([("Memo", memo)] if memo else []),
        warning="Payments on the Stellar network cannot be reversed: check the address (and the memo the "
        "destination asks for). Money sent to a wrong address is lost.",
        hidden=[("amount", f"{amount}"), ("destination", destination), ("memo", memo), ("confirmed", "yes")],
        button=f"Yes, send ${amount:,.2f}",
        back=f"{reverse('wallet')}?{urlencode({'destination': destination})}#withdraw-heading",
    )


def _confirm_page(request, *, back: str, **confirm):
    """The confirmation of a withdrawal: it POSTs to the wallet page again, with `confirmed`."""
    confirm.update(action=reverse("wallet"), back=back, back_label="Change it", crumbs=[("Wallet", reverse("wallet"))])
    return render(request, "includes/confirm.html", {"confirm": confirm})


# --- Withdraw to Airtm -----------------------------------------------------------------------------

AIRTM_STATUS_WORDS = {
    Withdrawal.Status.CREATED: "Being sent to Airtm",
    Withdrawal.Status.COMMITTED: "Sent to Airtm",
    Withdrawal.Status.PENDING: "Airtm is paying it",
    Withdrawal.Status.PENDING_USER_ACTION: "Airtm needs you: open your Airtm account",
    Withdrawal.Status.COMPLETED: "Paid to your Airtm account",
    Withdrawal.Status.FAILED: "Failed: the money is back in your balance",
    Withdrawal.Status.CANCELED: "Canceled: the money is back in your balance",
}


def _airtm_withdraw_context(user, form: AirtmWithdrawalForm | None = None) -> dict:
    rows = Withdrawal.objects.filter(
        user=user, purpose=Withdrawal.Purpose.WITHDRAWAL, destination_type__in=AIRTM_TYPES
    ).order_by("-id")[:10]
    return {
        "airtm_withdraw_form": (form or AirtmWithdrawalForm()) if user.airtm_user_id else None,
        "airtm_withdrawals": [
            {
                "id": w.public_id,
                "amount": money_dollars(w.amount),
                "when": w.created_at,
                "status": AIRTM_STATUS_WORDS.get(w.status, w.status),
                "done": w.status in Withdrawal.TERMINAL,
                "reason": w.failure_reason if w.status in Withdrawal.TERMINAL else "",
                "cancelable": withdrawal_cancelable(w),
            }
            for w in rows
        ],
    }


def _airtm_withdraw(request, context: dict):
    """The "Withdraw to Airtm" form: to the linked account, committed at once."""
    user = request.user
    if not rail_enabled("airtm"):
        messages.error(request, "Withdrawals to Airtm are not offered here.")
        return redirect("wallet")
    if not user.airtm_user_id:
        messages.error(request, "Link your Airtm account first.")
        return redirect("airtm-link")
    form = AirtmWithdrawalForm(request.POST)
    if form.is_valid() and request.POST.get("confirmed") != "yes":
        amount = form.cleaned_data["amount"]
        available = balance_snapshot(user=user).available
        if money_dollars(available) < amount:
            form.add_error("amount", f"Not enough funds: ${money_dollars(available):,.2f} available.")
        else:
            return _confirm_page(
                request,
                heading="Withdraw to Airtm?",
                summary=f"${amount:,.2f} goes from your balance to your Airtm account {user.airtm_email}.",
                rows=[("Amount", f"${amount:,.2f}"), ("To", f"Airtm account {user.airtm_email}")],
                warning="Once Airtm has paid it, a withdrawal cannot be undone. Until then you can cancel it "
                "from your wallet.",
                hidden=[("form", "airtm-withdraw"), ("airtm-amount", f"{amount}"), ("confirmed", "yes")],
                button=f"Yes, withdraw ${amount:,.2f} to Airtm",
                back=f"{reverse('wallet')}#airtm-withdraw-heading",
            )
    elif form.is_valid():
        try:
            withdrawal = withdrawal_create_airtm(
                user=user,
                amount=form.cleaned_data["amount"],
                destination_type=Withdrawal.DestinationType.AIRTM_BALANCE,
                destination_ref=user.airtm_email,
                commit=True,
                actor_type=AuditLog.ActorType.USER,
                actor_id=user.public_id,
            )
        except ServiceError as error:
            form.add_error("amount" if error.field == "amount" else None, error.message)
        else:
            if withdrawal.status == Withdrawal.Status.FAILED:
                messages.error(request, f"The withdrawal failed: {withdrawal.failure_reason} Your funds are back.")
            else:
                messages.success(
                    request,
                    f"${money_dollars(withdrawal.amount):,.2f} is on its way to your Airtm account; "
                    "it stays on hold here until Airtm has paid it.",
                )
            return redirect(f"{reverse('wallet')}#airtm-withdraw-heading")
    context.update(_airtm_withdraw_context(user, form))
    return render(request, "payments/wallet.html", context)


@login_required
@require_POST
def airtm_withdrawal_cancel(request, withdrawal_id: str):
    withdrawal = get_object_or_404(
        Withdrawal, public_id=withdrawal_id, user=request.user, destination_type__in=AIRTM_TYPES
    )
    try:
        withdrawal = withdrawal_cancel_airtm(
            withdrawal=withdrawal, actor_type=AuditLog.ActorType.USER, actor_id=request.user.public_id
        )
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        if withdrawal.status == Withdrawal.Status.CANCELED:
            messages.success(request, "The withdrawal was canceled; the money is back in your available balance.")
        else:
            messages.info(request, "The withdrawal could not be canceled; see its status below.")
    return redirect(f"{reverse('wallet')}#airtm-withdraw-heading")


@login_required
@require_POST
def simulate_deposit(request):
    """Sandbox only: mint test dollars into the member's wallet, as a real deposit would arrive."""
    if "stellar" not in settings.SANDBOX_PROVIDERS or not rail_enabled("crypto"):
        return redirect("wallet")
    form = SimulateDepositForm(request.POST)
    next_url = safe_next(request.POST.get("next"))
    wallet = Wallet.objects.filter(user=request.user, status=Wallet.Status.ACTIVE).first()
    if form.is_valid() and wallet is not None:
        try:
            sandbox_mint(wallet, int(form.cleaned_data["amount"] * 10_000_000))
            deposits_sync()
        except ServiceError:  # StellarError is one
            messages.error(request, "The sandbox could not simulate the deposit right now; try again.")
        else:
            messages.success(request, f"Simulated a deposit of ${form.cleaned_data['amount']:,.2f}.")
            return _back_or_wallet(next_url)  # back to the checkout it was added for, if any
    else:
        problems = form.errors.get("amount") or ["Your account is still being set up; try again in a moment."]
        messages.error(request, problems[0])
    return redirect(f"{reverse('wallet')}?{urlencode({'next': next_url})}" if next_url else "wallet")


@login_required
@require_POST
def test_recipient_create(request):
    """Sandbox only: make an address that accepts USDC and put it in the withdrawal form, so a
    member can try a withdrawal without a Stellar wallet of their own."""
    if "stellar" not in settings.SANDBOX_PROVIDERS or not rail_enabled("crypto"):
        return redirect("wallet")
    try:
        address = sandbox_recipient_create()
    except ServiceError:  # StellarError is one
        messages.error(request, "The sandbox could not create a test address right now; try again.")
        return redirect("wallet")
    messages.success(request, "A test address that accepts USDC is in the form below (nobody holds its key).")
    return redirect(f"{reverse('wallet')}?{urlencode({'destination': address})}#withdraw-heading")


# --- Top-ups through Airtm -------------------------------------------------------------------


@login_required
@require_POST
def topup_start(request):
    """Add funds with Airtm: create the top-up, then off to Airtm's checkout (303)."""
    if not rail_enabled("airtm"):  # OFFERHUB_PAYMENTS_PROVIDER=crypto: no Airtm here
        return redirect("wallet")
    form = TopupForm(request.POST)
    next_url = safe_next(request.POST.get("next"))
    wallet_again = f"{reverse('wallet')}?{urlencode({'next': next_url})}" if next_url else reverse("wallet")
    if not form.is_valid():
        messages.error(request, form.errors["amount"][0])
        return redirect(wallet_again)
    try:
        topup = topup_create(
            user=request.user,
            amount=form.cleaned_data["amount"],
            description="OfferHub balance top-up",
            actor_type=AuditLog.ActorType.USER,
            actor_id=request.user.public_id,
        )
    except ServiceError as error:
        messages.error(request, f"Airtm could not start the payment: {error.message} Nothing was charged.")
        return redirect(wallet_again)
    if next_url:  # the top-up's page offers the way back once the money is in (and checked with Airtm)
        returns = dict(request.session.get("topup_next", {}))
        returns[topup.public_id] = next_url
        request.session["topup_next"] = dict(list(returns.items())[-TOPUP_RETURNS_KEPT:])
    response = HttpResponseRedirect(topup.confirmation_uri or topup_page_url(topup))
    response.status_code = 303  # See Other: the browser GETs Airtm's checkout
    return response


def _own_topup(request, topup_id: str) -> Topup:
    topup = Topup.objects.select_related("user").filter(public_id=topup_id, user=request.user).first()
    if topup is None:
        raise Http404("No such top-up")
    return topup


def _topup_context(request, topup: Topup) -> dict:
    return {
        "next_url": safe_next(request.session.get("topup_next", {}).get(topup.public_id)),
        "topup": topup,
        "amount": money_dollars(topup.amount),
        "available": money_dollars(balance_snapshot(user=topup.user).available)
        if topup.status == Topup.Status.SUCCEEDED
        else None,
        "finished": topup.status in Topup.TERMINAL,
    }


@login_required
def topup_page(request, topup_id):
    """Where Airtm's checkout sends the member back: the top-up's progress, live."""
    return render(request, "payments/topup.html", _topup_context(request, _own_topup(request, topup_id)))


@login_required
def topup_status(request, topup_id):
    """The page's live part (htmx polls it): reads Airtm now and then, never more often."""
    topup = _own_topup(request, topup_id)
    if topup.status not in Topup.TERMINAL:
        try:
            topup = topup_refresh_throttled(topup=topup)
        except ServiceError as error:  # Airtm unreachable for now: the next poll tries again
            logger.info("top-up %s page: refresh failed (%s)", topup.public_id, error.code)
    return render(request, "payments/_topup_status.html", _topup_context(request, topup))


@login_required
@require_POST
def topup_cancel_view(request, topup_id):
    topup = _own_topup(request, topup_id)
    try:
        topup_cancel(topup=topup, actor_type=AuditLog.ActorType.USER, actor_id=request.user.public_id)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.info(request, "The top-up was canceled; nothing was charged.")
    return redirect("wallet-topup", topup_id=topup.public_id)
