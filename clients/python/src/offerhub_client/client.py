"""`OfferHub`: the entry point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from ._http import DEFAULT_BASE_URL, Transport
from .resources import (
    BalanceResource,
    Disputes,
    Events,
    Orders,
    TopUps,
    Users,
    WalletResource,
    WebhookEndpoints,
    Withdrawals,
)


class OfferHub:
    """A client for one API key.

    `base_url` is the server (``https://pay.example.com``; ``/api/v1`` is added when missing).
    `timeout` is per HTTP attempt, in seconds. `max_retries` is how many times a call is retried
    after a 429/502/503/504 answer or a connection failure (0: never); mutations keep their
    Idempotency-Key across those retries, so a retried POST never runs twice.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        max_retry_after: float = 60.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        self._transport = Transport(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_retry_after=max_retry_after,
            session=session,
            **extra,
        )
        self.users = Users(self._transport)
        self.balance = BalanceResource(self._transport)
        self.wallet = WalletResource(self._transport)
        self.topups = TopUps(self._transport)
        self.orders = Orders(self._transport)
        self.disputes = Disputes(self._transport)
        self.withdrawals = Withdrawals(self._transport)
        self.webhook_endpoints = WebhookEndpoints(self._transport)
        self.events = Events(self._transport)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def me(self) -> dict[str, Any]:
        """The calling key: `{apiKeyId, apiKeyName, scopes, marketplaceId}`."""
        return self._transport.data("GET", "auth/me")

    def config(self) -> dict[str, Any]:
        """Currencies, limits and features (public)."""
        return self._transport.data("GET", "config")

    def health(self) -> dict[str, Any]:
        return self._transport.data("GET", "health")

    def close(self) -> None:
        self._transport.session.close()

    def __enter__(self) -> OfferHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
