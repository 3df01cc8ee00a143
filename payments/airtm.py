"""Airtm Enterprise API v2 over HTTP (PROVIDERS.md §Airtm), the fiat rail's client.

What it guarantees (docs/payments.md "Airtm client"):
- HTTP Basic auth (key:secret) and a connect/read timeout on every request; the secret and the
  Authorization header are never logged, e-mail addresses are masked.
- At most `OFFERHUB_AIRTM_RATE_LIMIT_PER_SECOND` (10) requests per second per API key, shared by
  every process through Redis (a sliding window), in-process without Redis; a 429 all the same is
  waited out (Retry-After) and retried a bounded number of times.
- Amounts: `Decimal` in, refused unless positive with at most 2 decimals, written as exact JSON
  numbers; answers are parsed with `parse_float=Decimal`, so no float ever touches a dollar.
- Airtm has no Idempotency-Key: every payin and payout carries our unique `code`. A create whose
  answer is lost (timeout, connection error, 5xx, 429) is never resent blindly: the code is looked up
  first and the create repeated only when Airtm has nothing under it. "Code exists" (415029/415056)
  is resolved by the same look-up. One request, never two payins or payouts.
- Failures are `AirtmError`, a `ServiceError` with one of API.md §1.7's codes; `outcome_unknown`
  says the create may have happened (the caller keeps its hold and resolves by code later).
- Provider statuses become our enums; a status we do not know becomes `UNKNOWN` ("do not move,
  poll again"), logged, never an exception.
"""

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from hashlib import sha256
from urllib.parse import quote

import redis
import requests
from django.conf import settings
from django.utils.dateparse import parse_datetime

from offerhub import jsonnum
from offerhub.errors import ServiceError

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000000")  # far above any limit in /config; guards against typos of scale
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

# Airtm reason codes → (our code, details). Codes from API.md §1.7; the [X] ones are ours.
INSUFFICIENT_BALANCE = "415016"
PAYOUT_CODE_EXISTS = "415056"
PAYIN_CODE_EXISTS = "415029"
RECIPIENT_NOT_FOUND = "415059"
RECIPIENT_CANNOT_RECEIVE = "415060"
CANNOT_CANCEL = "415055"
UNAUTHORIZED = "415904"
REASON_CODES: dict[str, tuple[str, dict]] = {
    # The platform's own Airtm balance cannot cover a payout: not the member's funds, an operator's task.
    INSUFFICIENT_BALANCE: ("AIRTM_INSUFFICIENT_BALANCE", {}),
    PAYOUT_CODE_EXISTS: ("AIRTM_CODE_CONFLICT", {}),
    PAYIN_CODE_EXISTS: ("AIRTM_CODE_CONFLICT", {}),
    RECIPIENT_NOT_FOUND: ("AIRTM_USER_INVALID", {"reason": "USER_NOT_FOUND"}),
    RECIPIENT_CANNOT_RECEIVE: ("WITHDRAWAL_DESTINATION_INVALID", {"reason": "USER_CANNOT_RECEIVE"}),
    CANNOT_CANCEL: ("INVALID_STATE", {}),
    # Our key or secret is wrong: the operator's problem, not the caller's.
    UNAUTHORIZED: ("PROVIDER_UNAVAILABLE", {}),
}


class PayinStatus(StrEnum):
    """A payin's state in our words (API.md §16 top-up states), plus UNKNOWN."""

    AWAITING_USER_CONFIRMATION = "TOPUP_AWAITING_USER_CONFIRMATION"
    PROCESSING = "TOPUP_PROCESSING"
    SUCCEEDED = "TOPUP_SUCCEEDED"
    FAILED = "TOPUP_FAILED"
    CANCELED = "TOPUP_CANCELED"
    UNKNOWN = "UNKNOWN"  # a status Airtm added since: change nothing, poll again


class PayoutStatus(StrEnum):
    """A payout's state in our words (payments.models.Withdrawal.Status values), plus UNKNOWN."""

    CREATED = "WITHDRAWAL_CREATED"
    COMMITTED = "WITHDRAWAL_COMMITTED"
    PENDING = "WITHDRAWAL_PENDING"
    PENDING_USER_ACTION = "WITHDRAWAL_PENDING_USER_ACTION"
    COMPLETED = "WITHDRAWAL_COMPLETED"
    FAILED = "WITHDRAWAL_FAILED"
    CANCELED = "WITHDRAWAL_CANCELED"
    UNKNOWN = "UNKNOWN"  # change nothing, poll again

    @property
    def terminal(self) -> bool:
        return self in (PayoutStatus.COMPLETED, PayoutStatus.FAILED, PayoutStatus.CANCELED)


PAYIN_STATUSES = {
    "CREATED": PayinStatus.AWAITING_USER_CONFIRMATION,
    "PROCESSING": PayinStatus.PROCESSING,
    "CONFIRMED": PayinStatus.SUCCEEDED,
    "CANCELED": PayinStatus.CANCELED,
    "FAILED": PayinStatus.FAILED,
    "BRIDGE_FAILED": PayinStatus.FAILED,
    "BRIDGE_CANCELED": PayinStatus.FAILED,  # the money did not arrive: a failure, not the user's cancel
}
PAYOUT_STATUSES = {
    "CREATED": PayoutStatus.CREATED,
    "COMMITTED": PayoutStatus.COMMITTED,
    "PENDING": PayoutStatus.PENDING,
    "PROCESSING": PayoutStatus.PENDING,
    "PENDING_USER_ACTION": PayoutStatus.PENDING_USER_ACTION,
    "COMPLETED": PayoutStatus.COMPLETED,
    "CANCELED": PayoutStatus.CANCELED,
    "FAILED": PayoutStatus.FAILED,
    # ERROR is temporary at Airtm (it retries): nothing to record yet.
    "ERROR": PayoutStatus.UNKNOWN,
}


def payin_status(raw) -> PayinStatus:
    status = PAYIN_STATUSES.get(str(raw or "").upper())
    if status is None:
        logger.warning("Airtm payin status %r is unknown to us: kept as UNKNOWN (poll again)", raw)
        return PayinStatus.UNKNOWN
    return status


def payout_status(raw) -> PayoutStatus:
    status = PAYOUT_STATUSES.get(str(raw or "").upper())
    if status is None:
        logger.warning("Airtm payout status %r is unknown to us: kept as UNKNOWN (poll again)", raw)
        return PayoutStatus.UNKNOWN
    return status


class AirtmError(ServiceError):
    """An Airtm failure in our codes (`status` is ours, for the API). `http_status` is Airtm's
    HTTP status (None: no answer),
    `reason_code` Airtm's `code` (415016…); `outcome_unknown` is True when a create may have
    taken effect at Airtm although we could not confirm it: resolve it by code, keep the hold."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        reason_code: str = "",
        outcome_unknown: bool = False,
        details: dict | None = None,
    ):
        details = dict(details or {})
        if reason_code:
            details.setdefault("providerCode", reason_code)
        super().__init__(code, message, details=details)
        self.http_status = http_status
        self.reason_code = reason_code
        self.outcome_unknown = outcome_unknown


# --- amounts -------------------------------------------------------------------------


def amount_to_airtm(value) -> Decimal:
    """A USD amount as Airtm takes it: a positive Decimal with at most 2 decimals (never a float)."""
    if isinstance(value, float | bool) or not isinstance(value, Decimal | int | str):
        raise ServiceError("INVALID_AMOUNT", "Airtm amounts must be Decimal dollars", field="amount")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ServiceError("INVALID_AMOUNT", f"{value!r} is not an amount", field="amount") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise ServiceError("INVALID_AMOUNT", "the amount must be positive", field="amount")
    if amount != amount.quantize(CENT):
        raise ServiceError("INVALID_AMOUNT", "Airtm takes USD amounts with at most 2 decimals", field="amount")
    return amount.quantize(CENT)


def amount_from_airtm(value) -> Decimal | None:
    """An amount from an answer (parsed with parse_float=Decimal): exact, or None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, float):  # only if someone parsed without parse_float=Decimal
        raise AirtmError("PROVIDER_ERROR", "an Airtm amount arrived as a float")
    try:
        return Decimal(str(value)) if isinstance(value, int | str) else Decimal(value)
    except (InvalidOperation, TypeError):
        raise AirtmError("PROVIDER_ERROR", f"Airtm sent an amount we cannot read: {value!r}") from None


def encode_body(body: dict) -> str:
    """JSON with every Decimal written as an exact JSON number (10.5, never through a float).
    Amounts reach here through amount_to_airtm, so they have at most 2 decimals."""
    return jsonnum.dumps(body)


def decode_body(raw: bytes | str):
    return jsonnum.loads(raw or b"{}")


def mask_email(email: str) -> str:
    name, _, domain = (email or "").partition("@")
    return f"{name[:1]}***@{domain}" if domain else "***"


# --- typed answers ----------------------------------------------------------------------


def _when(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Payin:
    id: str
    code: str
    status: PayinStatus
    provider_status: str
    amount: Decimal | None
    description: str = ""
    checkout_url: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_airtm(cls, data: dict, *, checkout_base_url: str = "") -> "Payin":
        payin_id = str(data.get("id") or "")
        checkout = data.get("checkoutUrl") or data.get("checkoutUri") or data.get("redirectUri") or ""
        if not checkout and checkout_base_url and payin_id:
            checkout = f"{checkout_base_url.rstrip('/')}/{quote(payin_id, safe='')}"
        return cls(
            id=payin_id,
            code=str(data.get("code") or ""),
            status=payin_status(data.get("status")),
            provider_status=str(data.get("status") or ""),
            amount=amount_from_airtm(data.get("amount")),
            description=str(data.get("description") or ""),
            checkout_url=checkout,
            created_at=_when(data.get("createdAt")),
            updated_at=_when(data.get("updatedAt")),
            raw=data,
        )


@dataclass(frozen=True)
class Payout:
    id: str
    code: str
    status: PayoutStatus
    provider_status: str
    amount: Decimal | None
    gross_amount: Decimal | None = None
    net_amount: Decimal | None = None
    airtm_fee: Decimal | None = None
    enterprise_fee: Decimal | None = None
    airtm_user_id: str = ""
    airtm_user_email: str = ""
    reason_code: str = ""
    reason_description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_airtm(cls, data: dict) -> "Payout":
        return cls(
            id=str(data.get("id") or ""),
            code=str(data.get("code") or ""),
            status=payout_status(data.get("status")),
            provider_status=str(data.get("status") or ""),
            amount=amount_from_airtm(data.get("amount")),
            gross_amount=amount_from_airtm(data.get("grossAmount")),
            net_amount=amount_from_airtm(data.get("netAmount")),
            airtm_fee=amount_from_airtm(data.get("airtmFee")),
            enterprise_fee=amount_from_airtm(data.get("enterpriseFee")),
            airtm_user_id=str(data.get("airtmUserId") or ""),
            airtm_user_email=str(data.get("airtmUserEmail") or ""),
            reason_code=str(data.get("reasonCode") or ""),
            reason_description=str(data.get("reasonDescription") or ""),
            created_at=_when(data.get("createdAt")),
            updated_at=_when(data.get("updatedAt")),
            raw=data,
        )


@dataclass(frozen=True)
class PayoutEvent:
    status: PayoutStatus
    provider_status: str
    created_at: datetime | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_airtm(cls, data: dict) -> "PayoutEvent":
        provider_status = str(data.get("status") or data.get("type") or "")
        return cls(
            status=payout_status(provider_status.rpartition(".")[2]),  # "payout.completed" or "COMPLETED"
            provider_status=provider_status,
            created_at=_when(data.get("createdAt")),
            raw=data,
        )


@dataclass(frozen=True)
class AirtmUser:
    id: str
    status: str  # active | inactive
    email: str
    first_name: str = ""
    last_name: str = ""
    country: str = ""
    is_verified: bool = False

    @property
    def active(self) -> bool:
        return self.status.lower() == "active"

    @classmethod
    def from_airtm(cls, data: dict) -> "AirtmUser":
        return cls(
            id=str(data.get("id") or ""),
            status=str(data.get("status") or ""),
            email=str(data.get("primaryEmail") or data.get("email") or ""),
            first_name=str(data.get("firstName") or ""),
            last_name=str(data.get("lastName") or ""),
            country=str(data.get("country") or ""),
            is_verified=data.get("isVerified") is True,
        )


@dataclass(frozen=True)
class AirtmBalance:
    available: Decimal
    pending: Decimal


# --- rate limit --------------------------------------------------------------------------

# A sliding window of one second in a sorted set, timed by Redis's clock so that every process
# agrees. Answers 0 when the request may go, else how many milliseconds to wait.
_SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now_ms)
"""


class RateLimiter:
    """`limit` requests per `window` seconds per key: in Redis when REDIS_URL is set (shared by
    every process), in this process otherwise or while Redis is unreachable."""

    _local: dict[str, deque] = {}
    _local_lock = threading.Lock()
    # One connection pool and script per Redis URL for the whole process, and when Redis last
    # failed: while it is down we do not pay a connect timeout on every Airtm request.
    _scripts: dict[str, object] = {}
    _redis_down_until: dict[str, float] = {}
    REDIS_RETRY_SECONDS = 30.0

    def __init__(self, *, key: str, limit: int, window: float = 1.0, redis_url: str | None = None):
        self.key = key
        self.limit = limit
        self.window = window
        self.redis_url = settings.REDIS_URL if redis_url is None else redis_url

    def acquire(self, *, max_wait: float = 30.0) -> None:
        deadline = time.monotonic() + max_wait
        while True:
            wait = self._try()
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise AirtmError("PROVIDER_RATE_LIMITED", "too many Airtm requests queued here; try again shortly")
            time.sleep(wait)

    def _try(self) -> float:
        """0 when a request may go now (and it is counted), else the seconds to wait."""
        url = self.redis_url
        if url and time.monotonic() >= self._redis_down_until.get(url, 0):
            try:
                script = self._scripts.get(url)
                if script is None:
                    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
                    script = self._scripts[url] = client.register_script(_SLIDING_WINDOW)
                waited_ms = script(keys=[self.key], args=[self.limit, int(self.window * 1000), uuid.uuid4().hex])
                return int(waited_ms) / 1000
            except redis.RedisError:
                self._redis_down_until[url] = time.monotonic() + self.REDIS_RETRY_SECONDS
                logger.warning("Airtm rate limit: Redis unavailable, limiting in this process only", exc_info=True)
        return self._try_local()

    def _try_local(self) -> float:
        now = time.monotonic()
        with self._local_lock:
            sent = self._local.setdefault(self.key, deque())
            while sent and sent[0] <= now - self.window:
                sent.popleft()
            if len(sent) < self.limit:
                sent.append(now)
                return 0
            return max(0.001, sent[0] + self.window - now)


# --- the client --------------------------------------------------------------------------


class _LostAnswer(Exception):
    """A create's answer never arrived (or arrived as a 5xx/429): it may have taken effect."""

    def __init__(self, error: AirtmError):
        self.error = error


class AirtmClient:
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        checkout_base_url: str | None = None,
        connect_timeout: float | None = None,
        timeout: float | None = None,
        attempts: int = 4,
        backoff: float = 0.5,
        rate_limit: int | None = None,
    ):
        self.base_url = (base_url or settings.OFFERHUB_AIRTM_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else settings.OFFERHUB_AIRTM_API_KEY
        self.api_secret = api_secret if api_secret is not None else settings.OFFERHUB_AIRTM_API_SECRET
        self.checkout_base_url = (
            checkout_base_url if checkout_base_url is not None else settings.OFFERHUB_AIRTM_CHECKOUT_BASE_URL
        )
        self.timeout = (
            connect_timeout or settings.OFFERHUB_AIRTM_CONNECT_TIMEOUT_SECONDS,
            timeout or settings.OFFERHUB_AIRTM_TIMEOUT_SECONDS,
        )
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.session = requests.Session()
        self.session.auth = (self.api_key, self.api_secret)
        key_id = sha256(f"{self.base_url}|{self.api_key}".encode()).hexdigest()[:16]  # never the key itself
        # The window is a little over a second: requests leave here a few ms before Airtm counts
        # them, and that jitter must not push an eleventh into one of Airtm's seconds.
        self.limiter = RateLimiter(
            key=f"offerhub:airtm:rate:{key_id}",
            limit=rate_limit or settings.OFFERHUB_AIRTM_RATE_LIMIT_PER_SECOND,
            window=1.05,
        )

    # --- transport ---------------------------------------------------------------------

    def _send(self, method: str, path: str, *, body: dict | None = None, params=None, log_path: str = ""):
        """One request, rate limited. Returns the response or raises `requests` errors."""
        self.limiter.acquire()
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path}",
                data=encode_body(body) if body is not None else None,
                params=params,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            logger.info("Airtm %s %s: %s", method, log_path or path, type(exc).__name__)
            raise
        logger.info(
            "Airtm %s %s -> %s in %d ms",
            method,
            log_path or path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _request(self, method: str, path: str, *, body=None, params=None, log_path: str = "", retry: bool = True):
        """A request that may be repeated as is (reads, look-ups): retried on 429, 5xx and
        transport errors with backoff; other answers are parsed or raised as AirtmError."""
        attempts = self.attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._send(method, path, body=body, params=params, log_path=log_path)
            except requests.RequestException as exc:
                if attempt < attempts:
                    self._sleep(attempt, None)
                    continue
                raise _transport_error(exc) from None
            if response.status_code in RETRIED_STATUSES and attempt < attempts:
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            return _parse(response)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _send_once(self, method: str, path: str, body: dict | None = None):
        """Send a change (create, commit, cancel) once. Raises _LostAnswer when it may have taken
        effect unseen; a 429 is waited out here (Airtm refuses before doing anything) but still
        counts as lost, so that the caller looks before sending again all the same."""
        try:
            response = self._send(method, path, body=body)
        except requests.RequestException as exc:
            raise _LostAnswer(_transport_error(exc)) from None
        if response.status_code in RETRIED_STATUSES:
            try:
                _parse(response)
            except AirtmError as error:
                if response.status_code == 429:
                    self._sleep(1, response.headers.get("Retry-After"))
                raise _LostAnswer(error) from None
        return _parse(response)

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        try:
            delay = float(retry_after) if retry_after else self.backoff * 2 ** (attempt - 1)
        except ValueError:
            delay = self.backoff * 2 ** (attempt - 1)
        time.sleep(min(max(delay, 0), 30))

    def _deduplicated_create(self, *, kind: str, path: str, body: dict, look_up, wrap, same):
        """Create under `body["code"]` at most once, whatever the network does (see module doc)."""
        code = body["code"]
        last_error = None
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                # The previous answer was lost: Airtm may have it. Look before sending again.
                found = self._look_up_after_loss(look_up, code, last_error)
                if found is not None:
                    logger.info("Airtm %s %s found by code after a lost answer: not created again", kind, code)
                    return self._same_or_conflict(kind, found, same)
                self._sleep(attempt - 1, None)
            try:
                return wrap(self._send_once("POST", path, body))
            except _LostAnswer as lost:
                last_error = lost.error
                logger.warning("Airtm %s %s: answer lost (%s); will look the code up", kind, code, lost.error.code)
            except AirtmError as error:
                if error.reason_code not in (PAYIN_CODE_EXISTS, PAYOUT_CODE_EXISTS):
                    raise
                found = self._look_up_after_loss(look_up, code, error)
                if found is None:  # "exists" yet not found: Airtm is inconsistent, do not guess
                    raise AirtmError(
                        "PROVIDER_ERROR",
                        f"Airtm says {kind} {code} exists but cannot find it",
                        http_status=error.http_status,
                        reason_code=error.reason_code,
                        outcome_unknown=True,
                    ) from None
                return self._same_or_conflict(kind, found, same)
        found = self._look_up_after_loss(look_up, code, last_error)
        if found is not None:
            return self._same_or_conflict(kind, found, same)
        # Nothing under the code yet, but a request that timed out (or met a gateway's 5xx) may
        # still be running at Airtm: only a 429 (refused before anything) is a clean "not created".
        raise AirtmError(
            last_error.code,
            f"Airtm did not confirm {kind} {code}: {last_error.message}",
            http_status=last_error.http_status,
            reason_code=last_error.reason_code,
            outcome_unknown=last_error.http_status != 429,
            details={"code": code},
        )

    @staticmethod
    def _look_up_after_loss(look_up, code: str, cause: AirtmError | None):
        try:
            return look_up(code)
        except AirtmError as error:
            # Neither created nor known to be absent: the caller must not undo anything yet.
            raise AirtmError(
                error.code,
                f"Airtm's answer was lost and the look-up by code failed: {error.message}",
                http_status=error.http_status,
                reason_code=error.reason_code,
                outcome_unknown=True,
                details={"code": code, "cause": cause.code if cause else ""},
            ) from None

    @staticmethod
    def _same_or_conflict(kind: str, found, same):
        if not same(found):
            raise AirtmError(
                "AIRTM_CODE_CONFLICT",
                f"Airtm already has a {kind} with code {found.code} for different terms",
                details={"code": found.code, f"{kind}Id": found.id},
            )
        return found

    # --- payins --------------------------------------------------------------------------

    def payin_create(
        self,
        *,
        code: str,
        amount,
        description: str,
        confirmation_uri: str,
        cancel_uri: str,
        items: list[dict] | None = None,
    ) -> Payin:
        """A hosted-checkout payin under our unique `code`; created at most once.
        `items` default to one line for the whole amount; their total must equal `amount`."""
        amount = amount_to_airtm(amount)
        description = (description or "")[:250]
        lines = items or [{"description": description or code, "amount": amount, "quantity": 1}]
        lines = [
            {**line, "amount": amount_to_airtm(line["amount"]), "quantity": int(line["quantity"])} for line in lines
        ]
        if sum(line["amount"] * line["quantity"] for line in lines) != amount:
            raise ServiceError("INVALID_AMOUNT", "the payin's items must add up to its amount", field="amount")
        body = {
            "code": code,
            "amount": amount,
            "description": description,
            "items": lines,
            "confirmationUri": confirmation_uri,
            "cancelUri": cancel_uri,
        }
        return self._deduplicated_create(
            kind="payin",
            path="/payins",
            body=body,
            look_up=self.payin_by_code,
            wrap=self._payin,
            same=lambda payin: payin.amount == amount,
        )

    def payin_get(self, payin_id: str) -> Payin:
        return self._payin(self._request("GET", f"/payins/{_segment(payin_id)}"))

    def payin_by_code(self, code: str) -> Payin | None:
        """The payin created under our `code`, or None when Airtm has none."""
        data = self._get_or_none(f"/payins/by-code/{_segment(code)}")
        return None if data is None else self._payin(data)

    def payin_cancel(self, payin_id: str) -> Payin:
        """Cancel (DELETE); a payin already canceled is returned as it is."""
        return self._payin(self._idempotent_change("DELETE", f"/payins/{_segment(payin_id)}", payin_id, self.payin_get))

    def _payin(self, data: dict) -> Payin:
        return Payin.from_airtm(_object(data), checkout_base_url=self.checkout_base_url)

    # --- payouts -------------------------------------------------------------------------

    def payout_create(
        self,
        *,
        code: str,
        email: str,
        amount,
        notes: str,
        commit: bool = False,
        internal_note: str = "",
        require_id_verified: bool = False,
    ) -> Payout:
        """A payout to the Airtm user `email` under our unique `code`; created at most once.
        With `commit`, Airtm sends it at once; a payout found by code after a lost answer and
        still CREATED is committed here."""
        amount = amount_to_airtm(amount)
        body = {"airtmUserEmail": email, "amount": amount, "notes": (notes or "")[:255], "code": code}
        if commit:
            body["commit"] = True
        if internal_note:
            body["internalNote"] = internal_note[:255]
        if require_id_verified:
            body["requireIdVerified"] = True
        payout = self._deduplicated_create(
            kind="payout",
            path="/payouts",
            body=body,
            look_up=self.payout_by_code,
            wrap=_payout,
            same=lambda found: (
                found.amount == amount
                and (not found.airtm_user_email or found.airtm_user_email.lower() == email.lower())
            ),
        )
        if commit and payout.status == PayoutStatus.CREATED:
            payout = self.payout_commit(payout.id)
        return payout

    def payout_commit(self, payout_id: str) -> Payout:
        """Commit a CREATED payout; after a lost answer it is re-read, and one already past
        CREATED is returned as it is."""

        def already_done(payout: Payout) -> bool:
            return payout.status not in (PayoutStatus.CREATED, PayoutStatus.UNKNOWN)

        data = self._idempotent_change(
            "POST", f"/payouts/{_segment(payout_id)}/commit", payout_id, self.payout_get, done=already_done
        )
        return _payout(data)

    def payout_cancel(self, payout_id: str) -> Payout:
        """Cancel (only CREATED or PENDING at Airtm, else INVALID_STATE); one already canceled is returned."""
        data = self._idempotent_change("DELETE", f"/payouts/{_segment(payout_id)}", payout_id, self.payout_get)
        return _payout(data)

    def payout_get(self, payout_id: str) -> Payout:
        return _payout(self._request("GET", f"/payouts/{_segment(payout_id)}"))

    def payout_by_code(self, code: str) -> Payout | None:
        data = self._get_or_none(f"/payouts/by-code/{_segment(code)}")
        return None if data is None else _payout(data)

    def payout_events(self, payout_id: str) -> list[PayoutEvent]:
        data = self._request("GET", f"/payouts/{_segment(payout_id)}/events")
        items = data.get("items", []) if isinstance(data, dict) else data
        return [PayoutEvent.from_airtm(item) for item in items or [] if isinstance(item, dict)]

    # --- users and account ---------------------------------------------------------------

    def user_by_email(self, email: str) -> AirtmUser:
        """The Airtm user with this e-mail; AIRTM_USER_INVALID (reason USER_NOT_FOUND) when none."""
        data = self._get_or_none(f"/users/{_segment(email)}", log_path=f"/users/{mask_email(email)}")
        if data is None:
            raise AirtmError(
                "AIRTM_USER_INVALID",
                "No Airtm account uses this e-mail address",
                http_status=404,
                details={"reason": "USER_NOT_FOUND"},
            )
        return AirtmUser.from_airtm(_object(data))

    def me(self) -> dict:
        """The enterprise account Airtm knows us as (its shape as Airtm sends it)."""
        return _object(self._request("GET", "/me"))

    def balance(self) -> AirtmBalance:
        data = _object(self._request("GET", "/me/balance"))
        return AirtmBalance(
            available=amount_from_airtm(data.get("available")) or Decimal(0),
            pending=amount_from_airtm(data.get("pending")) or Decimal(0),
        )

    # --- helpers -------------------------------------------------------------------------

    def _get_or_none(self, path: str, *, log_path: str = "") -> dict | None:
        try:
            return self._request("GET", path, log_path=log_path)
        except AirtmError as error:
            if error.http_status == 404 and error.reason_code not in (UNAUTHORIZED,):
                return None
            raise

    def _idempotent_change(self, method: str, path: str, object_id: str, read, *, done=None) -> dict:
        """A change (commit, cancel) whose answer may be lost: after a lost answer the object is
        re-read; if the change shows, that is the answer, else it is sent again (bounded)."""
        done = done or (lambda found: found.status.name == "CANCELED")
        last_error = None
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                found = read(object_id)
                if done(found):
                    return found.raw
                self._sleep(attempt - 1, None)
            try:
                return self._send_once(method, path)
            except _LostAnswer as lost:
                last_error = lost.error
            except AirtmError as error:
                # Refused: perhaps because it is already done (a retry after our own lost answer).
                try:
                    found = read(object_id)
                except AirtmError:
                    raise error from None
                if done(found):
                    return found.raw
                raise
        found = read(object_id)
        if done(found):
            return found.raw
        raise AirtmError(last_error.code, last_error.message, http_status=last_error.http_status, outcome_unknown=True)


def _segment(value: str) -> str:
    if not value:
        raise ServiceError("VALIDATION_ERROR", "an Airtm id or code is required")
    return quote(str(value), safe="")


def _payout(data) -> Payout:
    return Payout.from_airtm(_object(data))


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise AirtmError("PROVIDER_ERROR", "Airtm answered something other than an object")
    return data


def _transport_error(exc: requests.RequestException) -> AirtmError:
    if isinstance(exc, requests.Timeout):
        return AirtmError("PROVIDER_TIMEOUT", "Airtm did not answer in time")
    return AirtmError("PROVIDER_UNAVAILABLE", f"Airtm is unreachable ({type(exc).__name__})")


def _parse(response: requests.Response):
    try:
        data = decode_body(response.content)
    except ValueError:
        data = None
    if response.status_code < 400:
        if data is None:
            raise AirtmError(
                "PROVIDER_ERROR", "Airtm answered something that is not JSON", http_status=response.status_code
            )
        return data
    body = data if isinstance(data, dict) else {}
    reason_code = str(body.get("code") or "")
    message = str(body.get("message") or response.reason or "error")
    status = response.status_code
    if reason_code in REASON_CODES:
        code, details = REASON_CODES[reason_code]
    elif status == 429:
        code, details = "PROVIDER_RATE_LIMITED", {}
    elif status in (401, 403):
        code, details = "PROVIDER_UNAVAILABLE", {}
    else:
        code, details = "PROVIDER_ERROR", {}
    logger.info("Airtm refused: %s %s (%s)", status, reason_code or "-", code)
    raise AirtmError(code, message, http_status=status, reason_code=reason_code, details=details)
