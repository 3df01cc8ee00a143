"""Horizon over HTTP with stellar-sdk, and its failures mapped to our error codes.

The same code talks to the real Horizon and to the sandbox: only the base URL differs.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import requests
from django.conf import settings
from stellar_sdk import Asset, Server
from stellar_sdk.client.requests_client import RequestsClient
from stellar_sdk.exceptions import (
    BadRequestError,
    BadResponseError,
    NotFoundError,
    UnknownRequestError,
)
from stellar_sdk.exceptions import (
    ConnectionError as StellarConnectionError,
)

from offerhub.errors import ServiceError
from offerhub.money import STROOPS_PER_UNIT


class StellarError(ServiceError):
    """A Horizon call that did not give an answer we can act on: PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE, PROVIDER_ERROR or PROVIDER_RATE_LIMITED."""


# A fee bump refused (or failed) for its inner transaction: Horizon gives the inner
# transaction's own code in `result_codes.inner_transaction`.
FEE_BUMP_INNER_FAILED = "tx_fee_bump_inner_failed"


def refusal_code(result_codes: dict) -> str:
    """The transaction result code that says why: for a fee bump failed for its inner
    transaction, the inner's code (tx_bad_seq, tx_too_late, …), or FEE_BUMP_INNER_FAILED itself
    when the answer does not say (callers treat that as "maybe stale": look up, do not fail)."""
    code = result_codes.get("transaction", "")
    if code == FEE_BUMP_INNER_FAILED:
        return result_codes.get("inner_transaction") or FEE_BUMP_INNER_FAILED
    return code


@dataclass
class TransactionFailed(Exception):
    """Horizon's final word: the transaction was refused or failed; result codes say why."""

    result_codes: dict
    message: str

    def __str__(self):
        return f"{self.message} {self.result_codes}"

    @property
    def transaction_code(self) -> str:
        return self.result_codes.get("transaction", "")

    @property
    def refusal_code(self) -> str:
        return refusal_code(self.result_codes)

    @property
    def operation_codes(self) -> list[str]:
        return self.result_codes.get("operations", [])


def horizon() -> Server:
    # No automatic retries: a resubmission must be our decision, after a lookup.
    client = RequestsClient(
        num_retries=0,
        request_timeout=settings.HORIZON_TIMEOUT_SECONDS,
        post_timeout=settings.HORIZON_TIMEOUT_SECONDS,
    )
    return Server(settings.STELLAR_HORIZON_URL, client=client)


def usdc() -> Asset:
    return Asset("USDC", settings.STELLAR_USDC_ISSUER)


def _call(fn):
    """Run one Horizon request, translating transport failures."""
    try:
        return fn()
    except StellarConnectionError as exc:
        if isinstance(exc.__cause__, requests.Timeout):
            raise StellarError("PROVIDER_TIMEOUT", "Stellar (Horizon) did not answer in time") from exc
        raise StellarError("PROVIDER_UNAVAILABLE", "Stellar (Horizon) is unreachable") from exc
    except BadResponseError as exc:
        if exc.status == 504:
            raise StellarError("PROVIDER_TIMEOUT", "Stellar (Horizon) timed out") from exc
        raise StellarError("PROVIDER_ERROR", f"Stellar (Horizon) answered {exc.status}") from exc
    except BadRequestError as exc:
        if exc.status == 429:
            raise StellarError("PROVIDER_RATE_LIMITED", "Stellar (Horizon) is rate limiting us") from exc
        raise
    except UnknownRequestError as exc:
        raise StellarError("PROVIDER_ERROR", f"Stellar (Horizon) answered {exc.status}") from exc


def account_load(account_id: str) -> dict | None:
    """The account as Horizon shows it, or None when it does not exist."""
    try:
        return _call(lambda: horizon().accounts().account_id(account_id).call())
    except NotFoundError:
        return None
    except BadRequestError as exc:
        raise StellarError("PROVIDER_ERROR", f"Stellar (Horizon) refused the lookup: {exc.title}") from exc


def usdc_balance(account: dict) -> int | None:
    """USDC in stroops, or None when the account has no USDC trustline."""
    for balance in account.get("balances", []):
        if balance.get("asset_code") == "USDC" and balance.get("asset_issuer") == settings.STELLAR_USDC_ISSUER:
            return int(Decimal(balance["balance"]) * STROOPS_PER_UNIT)
    return None


def transaction_lookup(tx_hash: str) -> dict | None:
    try:
        return _call(lambda: horizon().transactions().transaction(tx_hash).call())
    except NotFoundError:
        return None
    except BadRequestError as exc:
        raise StellarError("PROVIDER_ERROR", f"Stellar (Horizon) refused the lookup: {exc.title}") from exc


def transaction_submit(envelope) -> dict:
    """Submit a signed envelope. Raises TransactionFailed when Horizon gives result codes
    (the network's word), StellarError when the outcome is unknown (any other answer)."""
    try:
        return _call(lambda: horizon().submit_transaction(envelope, skip_memo_required_check=True))
    except BadRequestError as exc:
        result_codes = (exc.extras or {}).get("result_codes") or {}
        if not result_codes.get("transaction"):
            raise StellarError("PROVIDER_ERROR", f"Stellar (Horizon) answered {exc.status} without a result") from exc
        raise TransactionFailed(result_codes=result_codes, message=exc.detail or "failed") from exc


def ledger_closed_at() -> datetime:
    """When the network's latest ledger closed, by Horizon's clock (not ours)."""
    root = _call(lambda: horizon().root().call())
    closed = root.get("history_latest_ledger_closed_at")
    if not closed:
        raise StellarError("PROVIDER_ERROR", "Horizon did not say when its latest ledger closed")
    return datetime.fromisoformat(closed.replace("Z", "+00:00"))


def friendbot_fund(account_id: str) -> None:
    """Testnet and sandbox only: create and fund an account with XLM."""
    url = settings.STELLAR_HORIZON_URL.rstrip("/") + "/friendbot"
    try:
        response = requests.get(url, params={"addr": account_id}, timeout=settings.HORIZON_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise StellarError("PROVIDER_UNAVAILABLE", "friendbot is unreachable") from exc
    if response.status_code >= 400 and account_load(account_id) is None:
        raise StellarError("PROVIDER_ERROR", f"friendbot answered {response.status_code}")


def sandbox_chain() -> bool:
    """True when Horizon is the sandbox's (it has a USDC faucet), never on a real network."""
    return "stellar" in settings.SANDBOX_PROVIDERS


def faucet_mint(*, address: str, amount: int, memo: str = "") -> str:
    """Sandbox only: mint `amount` stroops of USDC to an address that trusts USDC; returns the
    transaction hash. With a `memo` the faucet mints once per (address, memo) and answers the
    same hash to every retry."""
    data = {"addr": address, "amount": str(Decimal(amount) / STROOPS_PER_UNIT)}
    try:
        response = requests.post(
            settings.STELLAR_HORIZON_URL.rstrip("/") + "/faucet",
            data=data | ({"memo": memo} if memo else {}),
            timeout=settings.HORIZON_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        raise StellarError("PROVIDER_UNAVAILABLE", "The sandbox chain is unreachable") from exc
    if response.status_code != 200:
        raise StellarError("PROVIDER_ERROR", f"The sandbox faucet answered {response.status_code}")
    return response.json()["hash"]
