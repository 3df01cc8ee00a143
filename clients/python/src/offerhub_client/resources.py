"""One class per API resource. Mutations take `idempotency_key=` (default: a fresh uuid4 per call)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import requests

from ._http import Page, Transport, compact, money
from .errors import APIConnectionError, OfferHubError, error_from_response
from .sse import Event, SSEDecoder
from .types import (
    AirtmLink,
    Balance,
    BalanceOperation,
    BalanceSync,
    Deleted,
    DepositAddress,
    Dispute,
    Milestone,
    MilestoneInput,
    Order,
    TopUp,
    User,
    Wallet,
    WalletTransaction,
    WebhookDelivery,
    WebhookEndpoint,
    Withdrawal,
)

Amount = str | int | Decimal


def _id(value: str) -> str:
    return quote(value, safe="")


class Resource:
    def __init__(self, transport: Transport):
        self._t = transport


class Users(Resource):
    def create(
        self,
        *,
        external_user_id: str,
        email: str | None = None,
        type: Literal["BUYER", "SELLER", "BOTH"] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> User:
        """Create a user, or return the existing one with this `external_user_id` (§4)."""
        body = compact(externalUserId=external_user_id, email=email, type=type, metadata=metadata)
        return self._t.data("POST", "users", json=body, idempotency_key=idempotency_key)

    def get(self, user_id: str) -> User:
        return self._t.data("GET", f"users/{_id(user_id)}")

    def list(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        external_user_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[User]:
        params = compact(type=type, status=status, externalUserId=external_user_id, limit=limit, cursor=cursor)
        return self._t.page("users", params)

    def link_airtm(self, user_id: str, *, email: str, idempotency_key: str | None = None) -> AirtmLink:
        """Link the user's Airtm account (needed for top-ups and Airtm withdrawals)."""
        return self._t.data(
            "POST", f"users/{_id(user_id)}/airtm/link", json={"email": email}, idempotency_key=idempotency_key
        )


class BalanceResource(Resource):
    def get(self, user_id: str) -> Balance:
        return self._t.data("GET", f"users/{_id(user_id)}/balance")

    def verify(self, user_id: str) -> Balance:
        return self._t.data("GET", f"users/{_id(user_id)}/balance/verify")

    def _op(self, user_id: str, op: str, body: dict[str, Any], key: str | None) -> BalanceOperation:
        return self._t.data("POST", f"users/{_id(user_id)}/balance/{op}", json=body, idempotency_key=key)

    def credit(
        self,
        user_id: str,
        *,
        amount: Amount,
        currency: str | None = None,
        description: str | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> BalanceOperation:
        """`support` scope: a manual credit."""
        body = compact(amount=money(amount), currency=currency, description=description, reference=reference)
        return self._op(user_id, "credit", body, idempotency_key)

    def debit(
        self,
        user_id: str,
        *,
        amount: Amount,
        currency: str | None = None,
        description: str | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> BalanceOperation:
        """`support` scope: a manual debit."""
        body = compact(amount=money(amount), currency=currency, description=description, reference=reference)
        return self._op(user_id, "debit", body, idempotency_key)

    def reserve(
        self,
        user_id: str,
        *,
        amount: Amount,
        order_id: str,
        currency: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> BalanceOperation:
        """Put `amount` on hold under the reference `order_id` (any opaque string)."""
        body = compact(amount=money(amount), orderId=order_id, currency=currency, description=description)
        return self._op(user_id, "reserve", body, idempotency_key)

    def cancel_reservation(
        self,
        user_id: str,
        *,
        amount: Amount,
        order_id: str,
        currency: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> BalanceOperation:
        body = compact(amount=money(amount), orderId=order_id, currency=currency, description=description)
        return self._op(user_id, "cancel-reservation", body, idempotency_key)

    def release(
        self,
        user_id: str,
        *,
        amount: Amount,
        order_id: str,
        seller_id: str,
        currency: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> BalanceOperation:
        """`support` scope: pay a hold to `seller_id`."""
        body = compact(
            amount=money(amount), orderId=order_id, sellerId=seller_id, currency=currency, description=description
        )
        return self._op(user_id, "release", body, idempotency_key)

    def deduct_reserved(
        self,
        user_id: str,
        *,
        amount: Amount,
        order_id: str,
        currency: str | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> BalanceOperation:
        """`support` scope."""
        body = compact(amount=money(amount), orderId=order_id, currency=currency, description=description)
        return self._op(user_id, "deduct-reserved", body, idempotency_key)

    def sync(self, user_id: str, *, idempotency_key: str | None = None) -> BalanceSync:
        return self._t.data("POST", f"users/{_id(user_id)}/balance/sync", idempotency_key=idempotency_key)


class WalletResource(Resource):
    def get(self, user_id: str) -> Wallet:
        return self._t.data("GET", f"users/{_id(user_id)}/wallet")

    def deposit_address(self, user_id: str) -> DepositAddress:
        return self._t.data("GET", f"users/{_id(user_id)}/wallet/deposit")

    def transactions(self, user_id: str, *, limit: int | None = None) -> list[WalletTransaction]:
        return self._t.data("GET", f"users/{_id(user_id)}/wallet/transactions", params=compact(limit=limit))


class TopUps(Resource):
    def create(
        self,
        *,
        user_id: str,
        amount: Amount,
        currency: str | None = None,
        description: str | None = None,
        return_url: str | None = None,
        cancel_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> TopUp:
        """An Airtm payin; send the user to `confirmationUri` (§7). The user must be Airtm-linked."""
        body = compact(
            user_id=user_id,
            amount=money(amount),
            currency=currency,
            description=description,
            return_url=return_url,
            cancel_url=cancel_url,
            metadata=metadata,
        )
        return self._t.data("POST", "topups", json=body, idempotency_key=idempotency_key)

    def get(self, topup_id: str, *, user_id: str | None = None) -> TopUp:
        return self._t.data("GET", f"topups/{_id(topup_id)}", params=compact(user_id=user_id))

    def list(self, *, user_id: str | None = None, limit: int | None = None, cursor: str | None = None) -> Page[TopUp]:
        return self._t.page("topups", compact(user_id=user_id, limit=limit, cursor=cursor))

    def refresh(self, topup_id: str, *, idempotency_key: str | None = None) -> TopUp:
        """Re-read the payin at Airtm and apply its status."""
        return self._t.data("POST", f"topups/{_id(topup_id)}/refresh", idempotency_key=idempotency_key)

    def cancel(self, topup_id: str, *, idempotency_key: str | None = None) -> TopUp:
        return self._t.data("POST", f"topups/{_id(topup_id)}/cancel", idempotency_key=idempotency_key)


def _milestone(item: MilestoneInput) -> dict[str, Any]:
    ref = item.get("milestone_ref") or item.get("ref")
    title = item.get("title") or item.get("description")
    return compact(milestone_ref=ref, title=title, amount=money(item["amount"]))


class Orders(Resource):
    def create(
        self,
        *,
        buyer_id: str,
        seller_id: str,
        amount: Amount,
        title: str,
        currency: str | None = None,
        description: str | None = None,
        client_order_ref: str | None = None,
        milestones: Sequence[MilestoneInput] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Create an order (§8); milestones' amounts must add up to `amount`."""
        body = compact(
            buyer_id=buyer_id,
            seller_id=seller_id,
            amount=money(amount),
            title=title,
            currency=currency,
            description=description,
            client_order_ref=client_order_ref,
            milestones=None if milestones is None else [_milestone(item) for item in milestones],
            metadata=metadata,
        )
        return self._t.data("POST", "orders", json=body, idempotency_key=idempotency_key)

    def get(self, order_id: str) -> Order:
        return self._t.data("GET", f"orders/{_id(order_id)}")

    def list(
        self,
        *,
        buyer_id: str | None = None,
        seller_id: str | None = None,
        status: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Order]:
        params = compact(
            buyer_id=buyer_id,
            seller_id=seller_id,
            status=status,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        return self._t.page("orders", params)

    def _action(self, order_id: str, action: str, body: dict[str, Any] | None, key: str | None) -> Any:
        return self._t.data("POST", f"orders/{_id(order_id)}/{action}", json=body, idempotency_key=key)

    def reserve(self, order_id: str, *, amount: Amount | None = None, idempotency_key: str | None = None) -> Order:
        """Hold the order's amount on the buyer's balance: `ORDER_CREATED` → `FUNDS_RESERVED`."""
        body = compact(amount=None if amount is None else money(amount))
        return self._action(order_id, "reserve", body, idempotency_key)

    def cancel(self, order_id: str, *, reason: str | None = None, idempotency_key: str | None = None) -> Order:
        return self._action(order_id, "cancel", compact(reason=reason), idempotency_key)

    def create_escrow(self, order_id: str, *, idempotency_key: str | None = None) -> Order:
        """Deploy the escrow contract: → `ESCROW_FUNDING` (or 202 with `ESCROW_CREATING` if the chain is slow)."""
        return self._action(order_id, "escrow", None, idempotency_key)

    def fund_escrow(self, order_id: str, *, idempotency_key: str | None = None) -> Order:
        """Move the buyer's hold into the contract: → `IN_PROGRESS`."""
        return self._action(order_id, "escrow/fund", None, idempotency_key)

    def milestones(self, order_id: str) -> list[Milestone]:
        return self._t.data("GET", f"orders/{_id(order_id)}/milestones")

    def complete_milestone(self, order_id: str, ref: str, *, idempotency_key: str | None = None) -> Milestone:
        return self._action(order_id, f"milestones/{_id(ref)}/complete", None, idempotency_key)

    def release_milestone(self, order_id: str, ref: str, *, idempotency_key: str | None = None) -> Order:
        """Pay one completed milestone to the seller (multi-release escrows)."""
        return self._action(order_id, f"milestones/{_id(ref)}/release", None, idempotency_key)

    def release(
        self,
        order_id: str,
        *,
        reason: str | None = None,
        requested_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Release everything left in escrow to the seller; the order ends `CLOSED`."""
        body = compact(reason=reason, requestedBy=requested_by)
        return self._action(order_id, "resolution/release", body, idempotency_key)

    def refund(self, order_id: str, *, reason: str, idempotency_key: str | None = None) -> Order:
        """Return the whole escrow to the buyer."""
        return self._action(order_id, "resolution/refund", {"reason": reason}, idempotency_key)

    def open_dispute(
        self,
        order_id: str,
        *,
        opened_by: Literal["BUYER", "SELLER"],
        reason: Literal["NOT_DELIVERED", "QUALITY_ISSUE", "OTHER"],
        evidence: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Dispute:
        body = compact(openedBy=opened_by, reason=reason, evidence=None if evidence is None else list(evidence))
        return self._action(order_id, "resolution/dispute", body, idempotency_key)


class Disputes(Resource):
    def open(
        self,
        order_id: str,
        *,
        opened_by: Literal["BUYER", "SELLER"],
        reason: Literal["NOT_DELIVERED", "QUALITY_ISSUE", "OTHER"],
        evidence: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Dispute:
        """Same as `orders.open_dispute`: the order goes `DISPUTED`."""
        return Orders(self._t).open_dispute(
            order_id, opened_by=opened_by, reason=reason, evidence=evidence, idempotency_key=idempotency_key
        )

    def get(self, dispute_id: str) -> Dispute:
        return self._t.data("GET", f"disputes/{_id(dispute_id)}")

    def list(
        self,
        *,
        order_id: str | None = None,
        status: str | None = None,
        opened_by: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Dispute]:
        params = compact(orderId=order_id, status=status, openedBy=opened_by, limit=limit, cursor=cursor)
        return self._t.page("disputes", params)

    def assign(self, dispute_id: str, *, assigned_to: str, idempotency_key: str | None = None) -> Dispute:
        """`support` scope: `OPEN` → `UNDER_REVIEW`."""
        return self._t.data(
            "POST",
            f"disputes/{_id(dispute_id)}/assign",
            json={"assignedTo": assigned_to},
            idempotency_key=idempotency_key,
        )

    def resolve(
        self,
        dispute_id: str,
        *,
        decision: Literal["FULL_RELEASE", "FULL_REFUND", "SPLIT"],
        release_amount: Amount | None = None,
        refund_amount: Amount | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> Dispute:
        """`support` scope; `SPLIT` needs both amounts, summing to the order amount."""
        body = compact(
            decision=decision,
            releaseAmount=None if release_amount is None else money(release_amount),
            refundAmount=None if refund_amount is None else money(refund_amount),
            note=note,
        )
        return self._t.data("POST", f"disputes/{_id(dispute_id)}/resolve", json=body, idempotency_key=idempotency_key)


class Withdrawals(Resource):
    def create(
        self,
        *,
        user_id: str,
        amount: Amount,
        destination_type: Literal["crypto", "bank", "airtm_balance"],
        destination_ref: str,
        currency: str | None = None,
        commit: bool | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> Withdrawal:
        """`crypto` pays a Stellar address at once; `bank`/`airtm_balance` create an Airtm payout (§11)."""
        body = compact(
            userId=user_id,
            amount=money(amount),
            destinationType=destination_type,
            destinationRef=destination_ref,
            currency=currency,
            commit=commit,
            description=description,
        )
        return self._t.data("POST", "withdrawals", json=body, idempotency_key=idempotency_key)

    def get(self, withdrawal_id: str, *, user_id: str | None = None) -> Withdrawal:
        return self._t.data("GET", f"withdrawals/{_id(withdrawal_id)}", params=compact(userId=user_id))

    def list(
        self, *, user_id: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[Withdrawal]:
        return self._t.page("withdrawals", compact(userId=user_id, limit=limit, cursor=cursor))

    def commit(
        self, withdrawal_id: str, *, user_id: str | None = None, idempotency_key: str | None = None
    ) -> Withdrawal:
        """Confirm a `WITHDRAWAL_CREATED` Airtm payout."""
        return self._t.data(
            "POST",
            f"withdrawals/{_id(withdrawal_id)}/commit",
            params=compact(userId=user_id),
            idempotency_key=idempotency_key,
        )

    def refresh(self, withdrawal_id: str, *, idempotency_key: str | None = None) -> Withdrawal:
        return self._t.data("POST", f"withdrawals/{_id(withdrawal_id)}/refresh", idempotency_key=idempotency_key)

    def cancel(
        self, withdrawal_id: str, *, user_id: str | None = None, idempotency_key: str | None = None
    ) -> Withdrawal:
        """Cancel an Airtm withdrawal while Airtm allows it; the hold returns to available."""
        return self._t.data(
            "POST",
            f"withdrawals/{_id(withdrawal_id)}/cancel",
            params=compact(userId=user_id),
            idempotency_key=idempotency_key,
        )


class WebhookEndpoints(Resource):
    """`support` scope (§14). The secret is in the answer to `create` only: store it then."""

    def create(
        self,
        *,
        url: str,
        events: Sequence[str] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        body = compact(url=url, events=None if events is None else list(events), description=description)
        return self._t.data("POST", "webhook-endpoints", json=body, idempotency_key=idempotency_key)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[WebhookEndpoint]:
        return self._t.page("webhook-endpoints", compact(limit=limit, cursor=cursor))

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        return self._t.data("GET", f"webhook-endpoints/{_id(endpoint_id)}")

    def delete(self, endpoint_id: str, *, idempotency_key: str | None = None) -> Deleted:
        return self._t.data("DELETE", f"webhook-endpoints/{_id(endpoint_id)}", idempotency_key=idempotency_key)

    def deliveries(
        self, endpoint_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[WebhookDelivery]:
        return self._t.page(f"webhook-endpoints/{_id(endpoint_id)}/deliveries", compact(limit=limit, cursor=cursor))


class Events(Resource):
    def stream(
        self,
        *,
        types: Sequence[str] | None = None,
        resources: Sequence[str] | None = None,
        user_id: str | None = None,
        since: str | None = None,
        last_event_id: str | None = None,
        include_pings: bool = False,
        max_reconnects: int | None = None,
        read_timeout: float = 75.0,
    ) -> Iterator[Event]:
        """Iterate domain events as they happen (§12), forever.

        When the connection drops (or the server ends it, or answers 429/5xx) the stream reconnects
        after the server's `retry:` delay (3 s until it sends one), sending `Last-Event-ID` with the
        last id received, so nothing is missed or repeated. `since` (an `evt_…` id or a timestamp)
        replays from a point on the first connection; `last_event_id` resumes an earlier stream.
        Other errors (401, 403, 404, 400) are raised. `max_reconnects` bounds the reconnections
        in total (None: unlimited); `read_timeout` should exceed the 30 s heartbeat.
        """
        params: dict[str, Any] = compact(
            types=",".join(types) if types else None,
            resources=",".join(resources) if resources else None,
            user_id=user_id,
        )
        decoder = SSEDecoder(last_event_id=last_event_id)
        reconnects = 0
        while True:
            headers = {**self._t.headers(), "Accept": "text/event-stream", "Cache-Control": "no-cache"}
            query = dict(params)
            if decoder.last_event_id:
                headers["Last-Event-ID"] = decoder.last_event_id
            elif since:
                query["since"] = since
            failure: OfferHubError | None = None
            try:
                with self._t.session.get(
                    f"{self._t.base_url}/events",
                    params=query,
                    headers=headers,
                    stream=True,
                    timeout=(self._t.timeout, read_timeout),
                ) as raw:
                    if raw.status_code != 200:
                        try:
                            body = raw.json()
                        except ValueError:
                            body = None
                        failure = error_from_response(raw.status_code, body, raw.headers)
                        if raw.status_code != 429 and raw.status_code < 500:
                            raise failure
                    else:
                        for chunk in raw.iter_content(chunk_size=None):
                            for frame in decoder.feed(chunk):
                                if frame.event == "ping" and not include_pings:
                                    continue
                                yield Event.from_sse(frame)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failure = APIConnectionError(f"event stream interrupted: {exc}")
            if max_reconnects is not None and reconnects >= max_reconnects:
                if failure is not None:
                    raise failure
                return
            reconnects += 1
            delay = (decoder.retry if decoder.retry is not None else 3000) / 1000
            if failure is not None and failure.status == 429:
                delay = max(delay, getattr(failure, "retry_after", None) or 0)
            decoder = SSEDecoder(last_event_id=decoder.last_event_id, retry=decoder.retry)
            self._t.sleep(delay)
