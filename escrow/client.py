"""Trustless Work API v1 over HTTP (PROVIDERS.md §Trustless Work).

- Every request sends `x-api-key`, with a timeout.
- Calls that only *build* a transaction (every write endpoint answers an unsigned XDR)
  and reads are retried with backoff on 429, 5xx and timeouts: repeating them changes
  nothing. `send_transaction` is never retried here: after a lost answer the caller must
  find out whether the transaction landed (indexer, `validateOnChain=true`) first.
- Failures become `TrustlessWorkError` with one of our error codes and the provider's
  message kept.
- `verify_unsigned` checks a returned transaction before anyone signs it: source
  account, contract, function and the call's arguments must be what was asked.
"""

import random
import time
from dataclasses import dataclass, field

import requests
from django.conf import settings
from stellar_sdk import Address, InvokeHostFunction, TransactionBuilder, scval

from offerhub import jsonnum
from payments.wallets import MAX_FEE_PER_OPERATION

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
# A transaction to sign must expire within this (Trustless Work builds them with a few minutes'
# timeout) and be valid now, give or take the clocks' difference.
MAX_VALIDITY_SECONDS = 15 * 60
CLOCK_SKEW_SECONDS = 60
# Trustless Work's error names → our codes (API.md §1.7); anything else is ESCROW_INVALID_STATE.
ERROR_CODES = {
    "ESCROW_NOT_FOUND": "ESCROW_NOT_FOUND",
    "ESCROW_INSUFFICIENT_FUNDS": "ESCROW_INSUFFICIENT_FUNDS",
    "ESCROW_BALANCE_NOT_ENOUGH_TO_RELEASE": "ESCROW_INSUFFICIENT_FUNDS",
    "ESCROW_INSUFFICIENT_FUNDS_TO_MAKE_THE_REFUND": "ESCROW_INSUFFICIENT_FUNDS",
    "ESCROW_INSUFFICIENT_FUNDS_FOR_RESOLUTION": "ESCROW_INSUFFICIENT_FUNDS",
    "ESCROW_ALREADY_IN_DISPUTE": "DISPUTE_ALREADY_OPEN",
    "ESCROW_OPENED_FOR_DISPUTE": "DISPUTE_ALREADY_OPEN",
    "VALIDATION_ERROR": "PROVIDER_ERROR",
}


@dataclass
class TrustlessWorkError(Exception):
    code: str  # one of API.md's codes
    message: str
    status: int | None = None
    provider_code: str = ""
    details: dict = field(default_factory=dict)

    def __str__(self):
        return f"{self.code}: {self.message}"


class TamperedTransaction(TrustlessWorkError):
    """The unsigned transaction is not the call we asked for: it must not be signed."""


class TrustlessWorkClient:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
    ):
        self.base_url = (base_url or settings.TRUSTLESS_WORK_API_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else settings.TRUSTLESS_WORK_API_KEY
        self.timeout = timeout or settings.TRUSTLESS_WORK_TIMEOUT_SECONDS
        self.attempts = attempts
        self.backoff = backoff
        self.session = requests.Session()

    # --- transport -----------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: dict | None = None, params=None, retry: bool) -> dict:
        attempts = self.attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(
                    method,
                    f"{self.base_url}{path}",
                    data=jsonnum.dumps(body) if body is not None else None,
                    params=params,
                    headers={"x-api-key": self.api_key, "Content-Type": "application/json"},
                    timeout=self.timeout,
                )
            except requests.Timeout:
                if attempt < attempts:
                    self._sleep(attempt, None)
                    continue
                raise TrustlessWorkError("PROVIDER_TIMEOUT", "Trustless Work did not answer in time") from None
            except requests.RequestException as exc:
                if attempt < attempts:
                    self._sleep(attempt, None)
                    continue
                raise TrustlessWorkError("PROVIDER_UNAVAILABLE", f"Trustless Work is unreachable: {exc}") from None
            if response.status_code in RETRIED_STATUSES and attempt < attempts:
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            return self._parse(response)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = float(retry_after) if retry_after and retry_after.isdigit() else self.backoff * 2 ** (attempt - 1)
        time.sleep(min(delay, 30) * (1 + random.random() / 4))  # noqa: S311  (jitter, not security)

    @staticmethod
    def _parse(response: requests.Response) -> dict:
        try:
            data = jsonnum.loads(response.content or b"{}")
        except ValueError:
            data = {}
        if response.status_code < 400:
            return data
        message = (data.get("message") if isinstance(data, dict) else None) or response.reason or "error"
        provider_code = data.get("error", "") if isinstance(data, dict) else ""
        status = response.status_code
        if status == 429:
            code = "PROVIDER_RATE_LIMITED"
        elif status == 401:
            code = "PROVIDER_UNAVAILABLE"  # our key is wrong: an operator's problem, not the caller's
        elif status >= 500:
            code = "PROVIDER_ERROR"
        elif message == "Escrow not found" or provider_code == "ESCROW_NOT_FOUND":
            code = "ESCROW_NOT_FOUND"
        else:
            code = ERROR_CODES.get(provider_code, "ESCROW_INVALID_STATE")
        extras = data.get("extras") if isinstance(data, dict) else None
        result_codes = extras.get("result_codes") if isinstance(extras, dict) else None
        details = {"result_codes": result_codes} if isinstance(result_codes, dict) else {}  # a refused submission's
        raise TrustlessWorkError(code, str(message), status=status, provider_code=provider_code, details=details)

    # --- endpoints -----------------------------------------------------------------

    def deploy(self, escrow_type: str, body: dict) -> str:
        return self._request("POST", f"/deployer/{escrow_type}", body=body, retry=True)["unsignedTransaction"]

    def escrow_call(self, escrow_type: str, action: str, body: dict) -> str:
        """fund-escrow, change-milestone-status, approve-milestone, release-funds, …: an unsigned XDR."""
        return self._request("POST", f"/escrow/{escrow_type}/{action}", body=body, retry=True)["unsignedTransaction"]

    def send_transaction(self, signed_xdr: str) -> dict:
        """Submit once; a lost answer is for the caller to resolve by looking the escrow up."""
        return self._request("POST", "/helper/send-transaction", body={"signedXdr": signed_xdr}, retry=False)

    def get_escrows(self, contract_ids: list[str], *, validate_on_chain: bool = True) -> list[dict]:
        params = [("contractIds[]", contract_id) for contract_id in contract_ids]
        params.append(("validateOnChain", "true" if validate_on_chain else "false"))
        return self._request("GET", "/helper/get-escrow-by-contract-ids", params=params, retry=True)

    def index_transaction(self, tx_hash: str) -> dict:
        return self._request("POST", "/indexer/update-from-txHash", body={"txHash": tx_hash}, retry=True)

    def update_escrow(self, escrow_type: str, body: dict) -> str:
        """PUT update-escrow (platform address only): an unsigned XDR."""
        return self._request("PUT", f"/escrow/{escrow_type}/update-escrow", body=body, retry=True)[
            "unsignedTransaction"
        ]

    def get_escrows_by_signer(self, signer: str, **filters) -> list[dict]:
        """Escrows deployed by `signer`; filters as PROVIDERS.md (`engagementId`, `status`, `page`, …)."""
        return self._request("GET", "/helper/get-escrows-by-signer", params={"signer": signer, **filters}, retry=True)

    def get_escrows_by_role(self, role: str, role_address: str, **filters) -> list[dict]:
        params = {"role": role, "roleAddress": role_address, **filters}
        return self._request("GET", "/helper/get-escrows-by-role", params=params, retry=True)

    def get_balances(self, escrow_type: str, signer: str, addresses: list[str]) -> list[dict]:
        """`[{address, balance}]` for several contracts in one request."""
        params = [("signer", signer)] + [("addresses[]", address) for address in addresses]
        return self._request("GET", f"/escrow/{escrow_type}/get-multiple-escrow-balance", params=params, retry=True)


def verify_unsigned(
    xdr: str, *, source: str, contract_id: str | None, function: str, arguments: dict | None = None
) -> object:
    """Decode an unsigned transaction and refuse it unless it is exactly the call asked for.

    `contract_id` None accepts any contract (a deploy goes to the provider's deployer).
    `arguments` are checked against the call's argument map: amounts in stroops, addresses.
    Returns the decoded envelope, ready to sign."""
    try:
        envelope = TransactionBuilder.from_xdr(xdr, settings.STELLAR_NETWORK_PASSPHRASE)
    except Exception:
        raise TamperedTransaction("PROVIDER_ERROR", "the provider's transaction does not decode") from None
    tx = getattr(envelope, "transaction", None)
    operations = getattr(tx, "operations", [])
    problems = []
    if tx is None or tx.source.account_id != source:
        problems.append("source account")
    else:
        problems += _cost_and_validity_problems(tx)
    if len(operations) != 1 or not isinstance(operations[0], InvokeHostFunction):
        problems.append("operations")
    else:
        operation = operations[0]
        invoke = operation.host_function.invoke_contract
        if operation.source is not None and operation.source.account_id != source:
            problems.append("operation source")
        if invoke is None:
            problems.append("host function")
        else:
            if contract_id is not None and Address.from_xdr_sc_address(invoke.contract_address).address != contract_id:
                problems.append("contract")
            if invoke.function_name.sc_symbol.decode() != function.replace("-", "_"):
                problems.append("function")
            actual = _call_arguments(invoke)
            problems += [f"arguments.{key}" for key, value in (arguments or {}).items() if actual.get(key) != value]
    if problems:
        raise TamperedTransaction(
            "PROVIDER_ERROR",
            f"refused to sign: the provider's transaction differs in {', '.join(problems)}",
            details={"differences": problems},
        )
    return envelope


def _cost_and_validity_problems(tx) -> list[str]:
    """What a signature would commit us to beyond the call: the fee it lets the network charge
    (paid by a platform account, directly or through the fee bump) and how long it stays valid
    (a signed transaction held back could be sent much later). Both are the provider's choice."""
    problems = []
    resource_fee = tx.soroban_data.resource_fee.int64 if tx.soroban_data else 0
    operations = max(len(tx.operations), 1)
    # Fee-bumped (every signer but the treasury), the platform pays the bump's fee: the resource
    # fee plus the per-operation ceiling for the operations and the bump, whatever the inner says.
    bumped = resource_fee + MAX_FEE_PER_OPERATION * (operations + 1)
    if max(tx.fee, bumped) > settings.OFFERHUB_MAX_TRANSACTION_FEE:
        problems.append("fee")
    if (tx.fee - resource_fee) / operations > MAX_FEE_PER_OPERATION:  # the fee bump could not cover it
        problems.append("fee")
    bounds = tx.preconditions.time_bounds if tx.preconditions else None
    now = int(time.time())
    never_expires = bounds is None or bounds.max_time == 0
    if never_expires or bounds.max_time > now + MAX_VALIDITY_SECONDS or bounds.min_time > now + CLOCK_SKEW_SECONDS:
        problems.append("time bounds")
    return list(dict.fromkeys(problems))


def _call_arguments(invoke) -> dict:
    """The call's argument map as plain values: addresses as strings, i128 as int."""
    if len(invoke.args) != 1:
        return {}
    try:
        entries = scval.from_map(invoke.args[0])
    except (ValueError, TypeError):
        return {}
    plain = {}
    for key, value in entries.items():
        native = scval.to_native(value)
        plain[scval.from_symbol(key)] = native.address if isinstance(native, Address) else native
    return plain
