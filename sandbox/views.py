"""Sandbox provider roots. The full provider APIs (Horizon subset, Trustless Work v1,
Airtm v2) grow here behind these prefixes; each root answers like its real service's
does, so reachability checks and clients see the same thing against either."""

from django.conf import settings
from django.http import JsonResponse

NETWORK_PASSPHRASES = {
    "testnet": "Test SDF Network ; September 2015",
    "mainnet": "Public Global Stellar Network ; September 2015",
}


def horizon_root(request):
    """Horizon's `GET /`: network and version information."""
    base = request.build_absolute_uri("/sandbox/horizon")
    return JsonResponse(
        {
            "_links": {"account": {"href": f"{base}/accounts/{{account_id}}", "templated": True}},
            "horizon_version": "offerhub-sandbox",
            "core_version": "offerhub-sandbox",
            "network_passphrase": NETWORK_PASSPHRASES[settings.STELLAR_NETWORK],
        }
    )


def trustless_work_root(request):
    return JsonResponse({"name": "Trustless Work API (OfferHub sandbox)", "version": "v1"})


def airtm_root(request):
    return JsonResponse({"name": "Airtm Enterprise API (OfferHub sandbox)", "version": "v2"})
