"""The public escrow viewer (/escrow/<contract id>/) and its API twin, over HTTP against the sandbox."""

import os
from decimal import Decimal

import pytest
from django.test import Client
from stellar_sdk import StrKey, TransactionBuilder

from escrow.client import TrustlessWorkClient
from escrow.services import escrow_milestone_mark, escrow_release
from escrow.signing import envelope_sign
from marketplace.models import User
from payments.models import PlatformAccount
from sandbox.models import SandboxFault
from tests.escrow.test_lifecycle import USD, open_funded
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def unknown_contract_id() -> str:
    return StrKey.encode_contract(os.urandom(32))


def deploy_foreign(client: TrustlessWorkClient, settings, *, approver: str, provider: str) -> str:
    """A multi-release contract deployed straight through Trustless Work: no Escrow row of ours."""
    platform = PlatformAccount.objects.get()
    body = {
        "signer": platform.public_key,
        "engagementId": "someone-elses-job-42",
        "title": "Website redesign",
        "description": "Elsewhere",
        "platformFee": 2,
        "milestones": [
            {"description": "Wireframes", "amount": Decimal("10"), "receiver": provider},
            {"description": "Final site", "amount": Decimal("20.01"), "receiver": provider},
        ],
        "trustline": {"address": settings.STELLAR_USDC_ISSUER, "symbol": "USDC"},
        "roles": {
            "approver": approver,
            "serviceProvider": provider,
            "platformAddress": platform.public_key,
            "releaseSigner": platform.public_key,
            "disputeResolver": platform.public_key,
        },
    }
    envelope = TransactionBuilder.from_xdr(client.deploy("multi-release", body), settings.STELLAR_NETWORK_PASSPHRASE)
    return client.send_transaction(envelope_sign(envelope=envelope, signer=platform))["contractId"]


def test_our_released_escrow_shows_names_fees_milestones_and_the_timeline(
    chain, funded_user, trustless_work, client, auth_client, django_assert_max_num_queries
):
    buyer, seller = funded_user("50.00"), funded_user("0")
    escrow = open_funded(buyer, seller, 30 * USD, order="ord_viewer")
    escrow_milestone_mark(escrow=escrow, index=0, evidence="https://example.com/logo.png")
    escrow_release(escrow=escrow)
    escrow.refresh_from_db()
    hashes = [step.tx_hash for step in escrow.steps.all()]
    assert len(hashes) == 5 and all(hashes)

    with django_assert_max_num_queries(5):
        page = client.get(f"/escrow/{escrow.contract_id}/")
    assert page.status_code == 200
    assert buyer.display_name not in page.content.decode()  # names and evidence: the order's side only
    client.force_login(buyer)
    with django_assert_max_num_queries(8):  # + the session and the user
        page = client.get(f"/escrow/{escrow.contract_id}/")
    html = page.content.decode()
    for text in (
        buyer.display_name,
        seller.display_name,
        "OfferHub (platform)",
        "Created through OfferHub",
        "Released",
        "Logo design",
        'href="https://example.com/logo.png"',
        "Approved",
        "$30.00",  # amount
        "$0.00",  # balance
        "Trustless Work (0.3 %)",
        "\u2212$0.09",
        "Platform fee (5 %)",
        "\u2212$1.50",
        "$28.41",  # what the seller got
        "Funded by the buyer ($30.00)",
        "Milestone 1 marked “completed” by the seller",
        "Milestone 1 approved by the buyer",
        "Funds released to the seller",
        escrow.public_id,
        "ord_viewer",
    ):
        assert text in html, text
    for tx_hash in hashes:
        assert f'<code class="text-break user-select-all" data-testid="tx-hash">{tx_hash}</code>' in html
        assert f'data-copy="{tx_hash}"' in html
    assert "only known for escrows created through this OfferHub" not in html

    url = f"/api/v1/escrows/{escrow.contract_id}"
    client.logout()
    assert client.get(url).json()["error"]["code"] == "UNAUTHORIZED"
    assert client.get(url).status_code == 401
    assert auth_client(scopes=["write"]).get(url).status_code == 403
    response = auth_client(scopes=["read"]).get(url)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["meta"]["requestId"]
    data = body["data"]
    assert {k: data[k] for k in ("id", "orderId", "trustlessContractId", "type", "status", "chainStatus")} == {
        "id": escrow.public_id,
        "orderId": "ord_viewer",
        "trustlessContractId": escrow.contract_id,
        "type": "single-release",
        "status": "RELEASED",
        "chainStatus": "released",
    }
    assert (data["amount"], data["balance"], data["currency"]) == ("30.00", "0.00", "USD")
    assert data["fees"] == {
        "amount": "30.00",
        "trustlessWork": "0.09",
        "trustlessWorkPercent": "0.3",
        "platform": "1.50",
        "platformPercent": "5",
        "receiverGets": "28.41",
    }
    assert (data["flags"]["released"], data["flags"]["disputed"], data["flags"]["resolved"]) == (True, False, False)
    assert data["roles"]["approver"] == {
        "address": buyer.wallet.public_key,
        "name": buyer.display_name,
        "relation": "buyer",
    }
    assert data["roles"]["releaseSigner"]["name"] == "OfferHub (platform)"
    (milestone,) = data["milestones"]
    assert milestone["status"] == "completed" and milestone["approved"] is True
    assert milestone["evidence"] == "https://example.com/logo.png" and milestone["amount"] is None
    assert [entry["transactionHash"] for entry in data["timeline"]] == hashes
    assert data["timeline"][1]["action"] == "fund-escrow"
    assert data["timeline"][1]["confirmedAt"].endswith("Z")


def test_a_foreign_contract_shows_shortened_addresses_and_no_timeline(
    chain, funded_user, trustless_work, client, auth_client, settings
):
    buyer, seller = funded_user("0"), funded_user("0")  # our members, but not through an escrow of ours
    approver, provider = buyer.wallet.public_key, seller.wallet.public_key
    contract = deploy_foreign(trustless_work, settings, approver=approver, provider=provider)

    page = client.get(f"/escrow/{contract}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"{approver[:4]}…{approver[-4:]}" in html
    assert f"{provider[:4]}…{provider[-4:]}" in html
    assert buyer.display_name not in html and seller.display_name not in html
    assert "OfferHub (platform)" not in html and "Created through OfferHub" not in html
    assert "only known for escrows created through this OfferHub" in html
    for text in (
        "Website redesign",
        "Wireframes",
        "Final site",
        "$30.01",
        "Waiting for funding",
        "someone-elses-job-42",
    ):
        assert text in html, text

    data = auth_client(scopes=["read"]).get(f"/api/v1/escrows/{contract}").json()["data"]
    assert (data["id"], data["orderId"], data["status"], data["timeline"]) == (None, None, None, None)
    assert (data["type"], data["chainStatus"], data["amount"], data["balance"]) == (
        "multi-release",
        "unfunded",
        "30.01",
        "0.00",
    )
    # Fees per milestone payout, each rounded down to the stroop: 0.3 % and 2 % of 10.00 and of 20.01.
    assert data["fees"] == {
        "amount": "30.01",
        "trustlessWork": "0.09",
        "trustlessWorkPercent": "0.3",
        "platform": "0.60",
        "platformPercent": "2",
        "receiverGets": "29.31",
    }
    assert data["roles"]["approver"] == {"address": approver, "name": None, "relation": None}
    assert [m["amount"] for m in data["milestones"]] == ["10.00", "20.01"]
    assert data["milestones"][0]["receiver"]["address"] == provider
    assert data["flags"] is None


def test_malformed_ids_are_404_without_asking_the_provider(trustless_work, client, auth_client):
    SandboxFault.objects.create(service="trustless-work", status_code=503)  # any call would fail
    valid = unknown_contract_id()
    for malformed in ("not-an-id", "C" + "A" * 55, valid.lower(), "G" + valid[1:], valid + "A"):
        page = client.get(f"/escrow/{malformed}/")
        assert page.status_code == 404, malformed
        assert "No escrow with this id" in page.content.decode()
        response = auth_client(scopes=["read"]).get(f"/api/v1/escrows/{malformed}")
        assert (response.status_code, response.json()["error"]["code"]) == (404, "ESCROW_NOT_FOUND")


def test_provider_down_is_a_friendly_error_then_unknown_is_404(trustless_work, client, auth_client):
    contract = unknown_contract_id()
    fault = SandboxFault.objects.create(service="trustless-work", path_contains="/helper/", status_code=503)
    page = client.get(f"/escrow/{contract}/")
    assert page.status_code == 503 and page["Retry-After"]
    assert "The escrow service is unreachable" in page.content.decode()
    response = auth_client(scopes=["read"]).get(f"/api/v1/escrows/{contract}")
    assert (response.status_code, response.json()["error"]["code"]) == (502, "PROVIDER_ERROR")

    fault.delete()  # the provider is back: errors were not cached
    page = client.get(f"/escrow/{contract}/")
    assert page.status_code == 404
    assert contract in page.content.decode()
    response = auth_client(scopes=["read"]).get(f"/api/v1/escrows/{contract}")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "ESCROW_NOT_FOUND")
    assert response.json()["error"]["details"]["contractId"] == contract


def test_lookup_form_redirects_to_the_escrow(client):
    assert client.get("/escrow/").status_code == 200
    contract = unknown_contract_id()
    response = client.get("/escrow/", {"contract": f"  {contract[:20].lower()} {contract[20:]}  "})
    assert (response.status_code, response["Location"]) == (302, f"/escrow/{contract}/")
    refused = client.get("/escrow/", {"contract": "ord_123"})
    assert refused.status_code == 400
    assert "they start with C and are 56 characters long" in refused.content.decode()


def test_the_page_is_rate_limited_per_client(trustless_work, client, settings):
    settings.OFFERHUB_RATE_LIMIT_PER_MINUTE = 1
    statuses = {client.get(f"/escrow/{unknown_contract_id()}/").status_code for _ in range(2)}
    assert 429 in statuses


def test_delivery_evidence_and_names_are_for_the_order_parties_only(
    chain, funded_user, trustless_work, client, auth_client
):
    buyer, seller = funded_user("50.00"), funded_user("0")
    User.objects.filter(pk=buyer.pk).update(display_name="Bea Privatebuyer")
    User.objects.filter(pk=seller.pk).update(display_name="Sol Privateseller")
    escrow = open_funded(buyer, seller, 30 * USD, order="ord_private")
    # What order_milestone_complete records on the contract: the delivery link, then the note.
    escrow_milestone_mark(escrow=escrow, index=0, evidence="https://files.example/s3cret-logo Password is hunter2")
    url = f"/escrow/{escrow.contract_id}/"
    private = ("files.example/s3cret-logo", "hunter2", "Bea Privatebuyer", "Sol Privateseller")

    def logged_in(user) -> Client:
        member = Client()
        member.force_login(user)
        return member

    staff = UserFactory(is_staff=True)
    for viewer in (client, logged_in(UserFactory())):
        page = viewer.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        for text in private:
            assert text not in html, text
        # What the chain says is still there: the milestone, its status, the roles as addresses.
        approver = buyer.wallet.public_key
        for text in ("Logo design", "Status: completed", f"{approver[:4]}…{approver[-4:]}", "$30.00"):
            assert text in html, text
        assert "Delivery evidence recorded" in html

    for party in (buyer, seller, staff):
        page = logged_in(party).get(url)
        html = page.content.decode()
        for text in private:
            assert text in html, (party, text)
        assert "private" in page["Cache-Control"]

    # The API: a key of another marketplace reads the contract as a stranger would; the
    # installation's own key (the marketplace that owns the order) reads our record.
    data = auth_client(scopes=["read"], marketplace_id="mkt_elsewhere").get(f"/api/v1/escrows/{escrow.contract_id}")
    assert data.status_code == 200
    assert not any(text in data.content.decode() for text in private)
    assert data.json()["data"]["milestones"][0]["evidence"] == ""
    own = auth_client(scopes=["read"]).get(f"/api/v1/escrows/{escrow.contract_id}").json()["data"]
    assert own["milestones"][0]["evidence"] == "https://files.example/s3cret-logo Password is hunter2"
    assert own["roles"]["approver"]["name"] == "Bea Privatebuyer"
