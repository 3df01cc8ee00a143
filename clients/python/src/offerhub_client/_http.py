"""The transport: authentication, Idempotency-Key, retries with back-off, the envelope (API.md §1)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, TypeVar

import requests
from requests.structures import CaseInsensitiveDict

from .errors import APIConnectionError, OfferHubError, error_from_response, parse_retry_after

__version__ = "0.1.0"

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of a list (§1.6). Iterate it for its items; `auto_paging_iter()` walks every page."""

    data: list[T]
    has_more: bool
    next_cursor: str | None
    _fetch: Callable[[str], Page[T]] | None = field(default=None, repr=False, compare=False)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> T:
        return self.data[index]

    def auto_paging_iter(self) -> Iterator[T]:
        page: Page[T] | None = self
        while page is not None:
            yield from page.data
            if not (page.has_more and page.next_cursor and page._fetch):
                return
            page = page._fetch(page.next_cursor)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]


def money(value: str | int | Decimal) -> str:
    """An amount as the API's 2-decimal string; floats are refused (they cannot hold cents exactly)."""
    if isinstance(value, (bool, float)):
        raise TypeError("amounts are strings like '10.00', ints or Decimals, never floats")
    if isinstance(value, str):
        return value
    amount = Decimal(value)
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"{value} has more than 2 decimals")
    return f"{amount:.2f}"


def compact(**values: Any) -> dict[str, Any]:
    """A body or query without the arguments left at None."""
    return {key: value for key, value in values.items() if value is not None}


class Transport:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not api_key:
            raise ValueError("api_key is required")
        base_url = base_url.rstrip("/")
        if not base_url.endswith("/api/v1"):
            base_url += "/api/v1"
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.session = session or requests.Session()
        self.sleep = sleep

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"offerhub-python/{__version__}",
        }

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with jitter: half the step fixed, half random (never a thundering herd)."""
        step = min(self.backoff_max, self.backoff_base * (2**attempt))
        return step / 2 + random.uniform(0, step / 2)  # noqa: S311  (jitter, not a secret)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Response:
        method = method.upper()
        headers = self.headers()
        body = json
        if method in MUTATIONS:
            # One key per call, reused by every retry of that call: the server replays instead of redoing.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
            body = {} if json is None else json
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = 0
        while True:
            try:
                raw = self.session.request(method, url, params=params, json=body, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if attempt < self.max_retries:
                    self.sleep(self.backoff(attempt))
                    attempt += 1
                    continue
                raise APIConnectionError(f"{method} {url} failed after {attempt + 1} attempts: {exc}") from exc
            response = Response(raw.status_code, _json(raw), CaseInsensitiveDict(raw.headers))
            if response.status < 400:
                return response
            error = error_from_response(response.status, response.body, response.headers)
            delay = self._retry_delay(error, attempt)
            if delay is None:
                raise error
            self.sleep(delay)
            attempt += 1

    def _retry_delay(self, error: OfferHubError, attempt: int) -> float | None:
        """Seconds to wait before retrying this error, or None to raise it."""
        retryable = error.status in RETRY_STATUSES or error.code == "IDEMPOTENCY_KEY_IN_PROGRESS"
        if not retryable or attempt >= self.max_retries:
            return None
        retry_after = parse_retry_after(error.headers.get("Retry-After"))
        if retry_after is None:
            return self.backoff(attempt)
        if retry_after > self.max_retry_after:
            return None  # waiting that long is the caller's decision: RateLimitError.retry_after says how long
        return retry_after

    def data(self, method: str, path: str, **kwargs: Any) -> Any:
        """The request's `data` (§1.5), unwrapped."""
        return unwrap(self.request(method, path, **kwargs).body)

    def page(self, path: str, params: dict[str, Any]) -> Page[Any]:
        body = self.request("GET", path, params=params).body
        if not isinstance(body, dict):
            raise OfferHubError(f"GET {path} did not answer the list envelope", status=200)
        pagination = body.get("pagination") or {}
        has_more = bool(body.get("hasMore", pagination.get("hasMore", False)))
        next_cursor = body.get("nextCursor", pagination.get("nextCursor"))
        items = unwrap(body)
        if not isinstance(items, list):
            raise OfferHubError(f"GET {path} did not answer a list", status=200)

        def fetch(cursor: str) -> Page[Any]:
            return self.page(path, {**params, "cursor": cursor})

        return Page(items, has_more, next_cursor, fetch)


def unwrap(body: Any) -> Any:
    """`data` of the envelope; also undoes the original server's double wrap (§1.5 [C])."""
    if isinstance(body, dict) and "data" in body:
        data = body["data"]
        if isinstance(data, dict) and data.get("success") is True and "data" in data:
            return data["data"]
        return data
    return body


def _json(raw: requests.Response) -> Any:
    if not raw.content:
        return None
    try:
        return raw.json()
    except ValueError:
        return None
