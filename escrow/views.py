"""The public escrow viewer: any Trustless Work contract, for anyone, no login.

The one place where on-chain detail (addresses, transaction hashes) is shown on purpose:
it lets buyers, sellers and anyone they share the link with check what the contract holds.
Names and delivery evidence are for the order's buyer and seller (and support) only, when
logged in (`escrow.selectors`).
"""

from django.conf import settings
from django.shortcuts import redirect, render
from django.utils.cache import patch_cache_control

from escrow.selectors import EscrowServiceUnavailable, contract_id_is_valid, escrow_public_view
from offerhub.api.ratelimit import client_ip, rate_limit_hit

RETRY_AFTER_SECONDS = 30
EXPLORER_NETWORKS = {"testnet": "testnet", "mainnet": "public"}


def _explorer_url() -> str | None:
    """stellar.expert for real networks; nothing in sandbox mode (its hashes exist nowhere else)."""
    if {"stellar", "trustlessWork"} & set(settings.SANDBOX_PROVIDERS):
        return None
    return f"https://stellar.expert/explorer/{EXPLORER_NETWORKS[settings.STELLAR_NETWORK]}"


def escrow_lookup(request):
    """A form: paste a contract id, see the escrow."""
    query = request.GET.get("contract", "")
    error = ""
    if query:
        contract_id = "".join(query.split()).upper()
        if contract_id_is_valid(contract_id):
            return redirect("escrow-detail", contract_id=contract_id)
        error = "That is not an escrow contract id: they start with C and are 56 characters long."
    return render(request, "escrow/lookup.html", {"query": query, "error": error}, status=400 if error else 200)


def escrow_detail(request, contract_id: str):
    if not contract_id_is_valid(contract_id):
        return _not_found(request, contract_id)
    limit = rate_limit_hit(bucket=f"escrow-viewer:{client_ip(request)}")
    if limit.exceeded:
        response = render(
            request, "escrow/unavailable.html", {"contract_id": contract_id, "throttled": True}, status=429
        )
        response["Retry-After"] = str(limit.retry_after)
        return response
    try:
        view = escrow_public_view(contract_id=contract_id, user=request.user)
    except EscrowServiceUnavailable:
        response = render(request, "escrow/unavailable.html", {"contract_id": contract_id}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if view is None:
        return _not_found(request, contract_id)
    response = render(
        request,
        "escrow/detail.html",
        {"view": view, "explorer": _explorer_url(), "network": settings.STELLAR_NETWORK},
    )
    if view.private:
        patch_cache_control(response, private=True, no_store=True)  # names and evidence: this reader only
    return response


def _not_found(request, contract_id: str):
    return render(request, "escrow/not_found.html", {"contract_id": contract_id}, status=404)
