"""Which payment rails this installation offers: OFFERHUB_PAYMENTS_PROVIDER (docs/payments.md
"Payment rails").

- `crypto`: USDC on Stellar only (deposit address, crypto withdrawals; the sandbox's simulated deposit).
- `airtm`: Airtm only (top-ups, withdrawals to Airtm, linking an Airtm account).
- `hybrid` (default): both.

The switch decides what the wallet page shows and what the API accepts; it changes no business
logic: money already moving on a rail that is switched off (a pending withdrawal, a deposit that
arrives at a wallet's address) is still settled and credited as before.

A refusal is 400 `INVALID_REQUEST` (API.md §1.7: a request this installation cannot serve as
configured), `details: {reason: "RAIL_DISABLED", rail, paymentsProvider, enabledRails}`.
"""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from offerhub.errors import ServiceError

CRYPTO = "crypto"
AIRTM = "airtm"
RAILS_BY_PROVIDER = {
    "crypto": frozenset({CRYPTO}),
    "airtm": frozenset({AIRTM}),
    "hybrid": frozenset({CRYPTO, AIRTM}),
}
# POST /withdrawals: the rail each destinationType travels on.
RAIL_BY_DESTINATION = {"crypto": CRYPTO, "bank": AIRTM, "airtm_balance": AIRTM}
WHAT = {CRYPTO: "USDC deposits and withdrawals on Stellar", AIRTM: "Airtm top-ups and withdrawals"}


def payments_provider() -> str:
    """The configured mode: "crypto", "airtm" or "hybrid"."""
    provider = settings.OFFERHUB_PAYMENTS_PROVIDER
    if provider not in RAILS_BY_PROVIDER:
        raise ImproperlyConfigured(
            f"OFFERHUB_PAYMENTS_PROVIDER must be one of {', '.join(RAILS_BY_PROVIDER)}, not {provider!r}."
        )
    return provider


def payments_rails() -> frozenset:
    """The rails offered: a subset of {"crypto", "airtm"}, never empty."""
    return RAILS_BY_PROVIDER[payments_provider()]


def rail_enabled(name: str) -> bool:
    if name not in WHAT:
        raise ValueError(f"unknown payment rail {name!r}")
    return name in payments_rails()


def rail_required(name: str, *, field: str = "") -> None:
    """Refuse (400 INVALID_REQUEST, details.reason RAIL_DISABLED) unless the rail is offered."""
    if rail_enabled(name):
        return
    provider = payments_provider()
    raise ServiceError(
        "INVALID_REQUEST",
        f"{WHAT[name]} are not offered here (OFFERHUB_PAYMENTS_PROVIDER is {provider})",
        field=field,
        details={
            "reason": "RAIL_DISABLED",
            "rail": name,
            "paymentsProvider": provider,
            "enabledRails": sorted(payments_rails()),
        },
    )


def rail_required_for_destination(data) -> None:
    """POST /withdrawals, before anything else: refuse a destinationType whose rail is off. A body
    that is not an object or a destinationType we do not know is left to the input validation."""
    destination = data.get("destinationType") if hasattr(data, "get") else None
    rail = RAIL_BY_DESTINATION.get(destination) if isinstance(destination, str) else None
    if rail is not None:
        rail_required(rail, field="destinationType")
