"""The dispute case over the API (API.md §10): list, read, assign, resolve, paid on chain
through the sandbox Trustless Work the live server serves; the ledger equals the chain after."""

import itertools
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from disputes.models import Dispute
from disputes.services import RESOLUTION_STEPS
from escrow.models import Escrow, EscrowStep
from escrow.services import escrow_fees
from marketplace.models import Order
from offerhub.models import Event
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.escrow.test_step_runner import fault
from tests.marketplace.test_orders_api import in_progress

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"dispute-{n}" for n in itertools.count())


def post(client, path, body=None):
    return client.post(f"/api/v1{path}", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))


def error(response) -> dict:
    return response.json()["error"]


def net(amount: int) -> int:
    """What a payout of `amount` stroops leaves its receiver (the trustless_work fixture's 5 % platform fee)."""
    return escrow_fees(amount=amount, platform_fee_percent=Escrow.objects.get().platform_fee_percent).net


def disputed(writer, buyer, seller, **order) -> dict:
    """An order in progress (through the API) with a dispute the buyer opened: the Dispute."""
    placed = in_progress(writer, buyer, seller, **order)
    body = {"openedBy": "BUYER", "reason": "QUALITY_ISSUE", "evidence": ["the logo is blurry"]}
    opened = post(writer, f"/orders/{placed['id']}/resolution/dispute", body)
    assert opened.status_code == 201, opened.content
    return opened.json()["data"]


def under_review(writer, support, buyer, seller, **order) -> dict:
    dispute = disputed(writer, buyer, seller, **order)
    assigned = post(support, f"/disputes/{dispute['id']}/assign", {"assignedTo": "agent-ana"})
    assert assigned.status_code == 200, assigned.content
    return assigned.json()["data"]


@pytest.mark.parametrize(
    ("decision", "amounts", "seller_gross", "buyer_gross", "escrow_status"),
    [
        ("FULL_RELEASE", {}, 30 * USD, 0, "RELEASED"),
        ("FULL_REFUND", {}, 0, 30 * USD, "REFUNDED"),
        ("SPLIT", {"releaseAmount": "18.00", "refund_amount": "12.00"}, 18 * USD, 12 * USD, "RELEASED"),
    ],
)
def test_a_dispute_is_assigned_and_resolved_and_paid_on_chain(
    chain, funded_user, trustless_work, writer, support, decision, amounts, seller_gross, buyer_gross, escrow_status
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    path = f"/disputes/{dispute['id']}"

    listed = support.get("/api/v1/disputes", {"orderId": dispute["orderId"], "status": "open", "openedBy": "BUYER"})
    assert listed.status_code == 200, listed.content
    (item,) = listed.json()["data"]
    assert (item["id"], item["status"], item["assignedTo"], item["order"]["status"]) == (
        dispute["id"],
        "OPEN",
        None,
        "DISPUTED",
    )
    assert listed.json()["hasMore"] is False
    assert support.get("/api/v1/disputes", {"status": "RESOLVED"}).json()["data"] == []
    assert support.get(f"/api/v1{path}").json()["data"] == item

    early = post(support, f"{path}/resolve", {"decision": decision, **amounts})
    assert early.status_code == 409 and error(early)["code"] == "INVALID_STATE"
    assert error(early)["details"]["currentState"] == "OPEN"
    assert error(early)["details"]["allowedStates"] == ["UNDER_REVIEW"]

    assigned = post(support, f"{path}/assign", {"agentId": "agent-ana"})  # the docs' name for assignedTo
    assert assigned.status_code == 200, assigned.content
    assert (assigned.json()["data"]["status"], assigned.json()["data"]["assignedTo"]) == ("UNDER_REVIEW", "agent-ana")
    again = post(support, f"{path}/assign", {"assignedTo": "agent-bob"})
    assert again.status_code == 409 and error(again)["details"]["currentState"] == "UNDER_REVIEW"

    resolved = post(support, f"{path}/resolve", {"decision": decision, "note": "Looked at both sides", **amounts})
    assert resolved.status_code == 200, resolved.content
    data = resolved.json()["data"]
    assert (data["status"], data["resolutionDecision"], data["decisionNote"]) == (
        "RESOLVED",
        decision,
        "Looked at both sides",
    )
    assert (data["releaseAmount"], data["refundAmount"]) == (f"{seller_gross / USD:.2f}", f"{buyer_gross / USD:.2f}")
    assert data["resolvedAt"] and data["order"]["status"] == "CLOSED"
    assert data["order"]["escrow"]["status"] == escrow_status
    assert support.get(f"/api/v1{path}").json()["data"] == data

    seller_available, _ = user_accounts(seller)
    buyer_available, buyer_held = user_accounts(buyer)
    assert seller_available.balance == (net(seller_gross) if seller_gross else 0)
    assert buyer_available.balance == 70 * USD + (net(buyer_gross) if buyer_gross else 0)
    assert buyer_held.balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    assert Order.objects.get().status == Order.Status.CLOSED
    types = set(Event.objects.values_list("type", flat=True))
    assert {"dispute.under_review", "dispute.resolved", "order.closed"} <= types
    resolved_event = Event.objects.get(type="dispute.resolved").payload
    assert (resolved_event["decision"], resolved_event["resolvedBy"]) == (decision, support.api_key.id)

    twice = post(support, f"{path}/resolve", {"decision": decision, **amounts})
    assert twice.status_code == 409 and error(twice)["details"]["currentState"] == "RESOLVED"
    assert EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).count() == 1


def test_a_split_of_a_multi_release_escrow_pays_each_milestone(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    dispute = under_review(writer, support, buyer, seller, milestones=milestones)

    resolved = post(support, f"/disputes/{dispute['id']}/resolve", {"decision": "SPLIT", **split("18.00", "12.00")})
    assert resolved.status_code == 200, resolved.content
    order = resolved.json()["data"]["order"]
    assert order["status"] == "CLOSED" and [m["status"] for m in order["milestones"]] == ["RELEASED", "RELEASED"]
    # The seller's share fills the milestones in order: all of the draft, 8.00 of the final.
    assert user_accounts(seller)[0].balance == net(10 * USD) + net(8 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(12 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def split(release: str, refund: str) -> dict:
    return {"releaseAmount": release, "refundAmount": refund}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"decision": "SPLIT", **split("18.00", "11.99")}, "INVALID_AMOUNT"),
        ({"decision": "SPLIT", **split("30.00", "0.01")}, "INVALID_AMOUNT"),
        ({"decision": "SPLIT", **split("30.00", "0.00")}, "INVALID_AMOUNT"),
        ({"decision": "SPLIT", "releaseAmount": "30.00"}, "INVALID_AMOUNT"),
        ({"decision": "FULL_RELEASE", "refundAmount": "30.00"}, "INVALID_REQUEST"),
        ({"decision": "SPLIT", **split("18.005", "11.995")}, "VALIDATION_ERROR"),
        ({"decision": "HALF"}, "VALIDATION_ERROR"),
        ({"decision": "FULL_REFUND", "note": "x" * 2001}, "VALIDATION_ERROR"),
        ({"decision": "FULL_REFUND", "note": "a\x00b"}, "VALIDATION_ERROR"),
    ],
)
def test_a_refused_resolution_applies_nothing(chain, funded_user, trustless_work, writer, support, body, code):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = under_review(writer, support, buyer, seller)

    refused = post(support, f"/disputes/{dispute['id']}/resolve", body)

    assert refused.status_code == 400 and error(refused)["code"] == code, refused.content
    assert Dispute.objects.get().status == Dispute.Status.UNDER_REVIEW
    assert Order.objects.get().status == Order.Status.DISPUTED
    assert Escrow.objects.get().status == Escrow.Status.DISPUTED
    assert not EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).exists()
    assert not Event.objects.filter(type="dispute.resolved").exists()
    assert user_accounts(seller)[0].balance == 0


def test_only_support_assigns_and_resolves(chain, funded_user, trustless_work, writer, auth_client):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    path = f"/disputes/{dispute['id']}"
    for action, body in (("assign", {"assignedTo": "me"}), ("resolve", {"decision": "FULL_REFUND"})):
        forbidden = post(writer, f"{path}/{action}", body)
        assert forbidden.status_code == 403 and error(forbidden)["code"] == "INSUFFICIENT_SCOPE", forbidden.content
    assert writer.get(f"/api/v1{path}").status_code == 200  # reading is `read`
    assert APIClient().get(f"/api/v1{path}").status_code == 401
    assert Dispute.objects.get().status == Dispute.Status.OPEN


def test_another_marketplaces_key_sees_no_dispute(chain, funded_user, trustless_work, writer, auth_client):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    stranger = auth_client(scopes=["read", "support"], marketplace_id="mkt_other")
    path = f"/disputes/{dispute['id']}"

    assert stranger.get("/api/v1/disputes").json()["data"] == []
    for response in (
        stranger.get(f"/api/v1{path}"),
        post(stranger, f"{path}/assign", {"assignedTo": "me"}),
        post(stranger, f"{path}/resolve", {"decision": "FULL_REFUND"}),
    ):
        assert response.status_code == 404 and error(response)["code"] == "DISPUTE_NOT_FOUND", response.content
    assert Dispute.objects.get().status == Dispute.Status.OPEN
    missing = stranger.get("/api/v1/disputes/dsp_nope")
    assert missing.status_code == 404 and error(missing)["details"]["disputeId"] == "dsp_nope"


def test_two_resolutions_at_once_pay_once(chain, funded_user, trustless_work, writer, support, make_api_key):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = under_review(writer, support, buyer, seller)
    _, secret = make_api_key(scopes=["support"])
    threads_count = 4
    barrier = threading.Barrier(threads_count)
    responses: list = []

    def resolve(n: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        body = {"decision": "SPLIT", **split("20.00", "10.00")} if n % 2 else {"decision": "FULL_RELEASE"}
        try:
            barrier.wait(timeout=30)
            path = f"/api/v1/disputes/{dispute['id']}/resolve"
            responses.append(client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"race-{n}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=resolve, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (threads_count - 1), [r.content for r in responses]
    assert {error(r)["code"] for r in responses if r.status_code == 409} == {"INVALID_STATE"}
    assert EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).count() == 1
    decided = Dispute.objects.get()
    seller_gross = decided.release_amount
    assert user_accounts(seller)[0].balance == net(seller_gross)
    assert user_accounts(buyer)[0].balance == 70 * USD + (net(decided.refund_amount) if decided.refund_amount else 0)
    assert Event.objects.filter(type="dispute.resolved").count() == 1
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_a_resolution_the_chain_refuses_goes_back_to_support(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = under_review(writer, support, buyer, seller)
    path = f"/disputes/{dispute['id']}/resolve"
    refusal = fault("resolve-dispute", 400, remaining=1)

    refused = post(support, path, {"decision": "FULL_RELEASE"})

    assert refused.status_code == 409 and error(refused)["details"]["step"] == "resolve-dispute", refused.content
    assert Dispute.objects.get().status == Dispute.Status.UNDER_REVIEW
    assert Dispute.objects.get().resolution_decision == ""
    assert Order.objects.get().status == Order.Status.DISPUTED
    assert Escrow.objects.get().status == Escrow.Status.DISPUTED
    assert user_accounts(seller)[0].balance == 0
    refusal.delete()

    paid = post(support, path, {"decision": "FULL_REFUND", "note": "second look"})
    assert paid.status_code == 200, paid.content
    assert paid.json()["data"]["order"]["status"] == "CLOSED"
    assert user_accounts(buyer)[0].balance == 70 * USD + net(30 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_a_case_between_members_without_an_email_is_assigned(chain, funded_user, trustless_work, writer, support):
    """Users created over the API may have no e-mail: checking that the agent is not a party
    must not trip over that (it answered 500)."""
    from marketplace.models import User

    buyer, seller = funded_user("100.00"), funded_user("0")
    User.objects.filter(pk__in=[buyer.pk, seller.pk]).update(email=None)
    dispute = disputed(writer, buyer, seller)
    assigned = post(support, f"/disputes/{dispute['id']}/assign", {"assignedTo": "agent-ana"})
    assert assigned.status_code == 200, assigned.content
    assert assigned.json()["data"]["status"] == "UNDER_REVIEW"
