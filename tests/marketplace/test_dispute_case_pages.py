"""The dispute case on the web order page, for the buyer and the seller: opening it with a file,
both sides' evidence and the thread (never support's notes), the deadline, withdrawing, and the
outcome net of fees, over the sandbox escrow where money moves."""

import re
import struct
import zlib
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from disputes.models import Dispute, DisputeEvidence, DisputeMessage
from disputes.services import dispute_assign, dispute_message_post, dispute_resolve
from escrow.models import Escrow
from escrow.services import escrow_fees
from marketplace.models import Order
from marketplace.orders import OrderActor
from offerhub.money import money_dollars
from payments.ledger import user_accounts
from tests.factories import ListingFactory, UserFactory
from tests.marketplace.test_order_pages import an_order, checkout_token, logged_in

USD = 10_000_000
S = Order.Status


def png_bytes(size: int = 8) -> bytes:
    """A real PNG image (a blurry orange disc on white: the "logo" in dispute), as a phone or a
    screenshot tool would upload."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def pixel(x: int, y: int) -> bytes:
        distance = ((x - size / 2) ** 2 + (y - size / 2) ** 2) ** 0.5 / (size / 2)
        ink = max(0.0, min(1.0, (0.9 - distance) * 3))  # soft edge: blurry on purpose
        return bytes(round(255 - (255 - channel) * ink) for channel in (240, 120, 20))

    rows = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(size)) for y in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png(name: str = "broken-logo.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, png_bytes(), content_type="image/png")


def bought(buyer, seller, *, dollars: int = 30) -> str:
    """The buyer buys one of the seller's listings through the web: the order page's URL (in progress)."""
    listing = ListingFactory(seller=seller, price_cents=dollars * 100)
    client = logged_in(buyer)
    location = client.post(
        f"/listings/{listing.public_id}/checkout/",
        {"token": checkout_token(client, listing), "price_cents": listing.price_cents},
    )["Location"]
    assert Order.objects.get(public_id=location.split("/")[2]).status == S.IN_PROGRESS
    return location


def a_case(status=Dispute.Status.OPEN, *, opened_by="BUYER", **order) -> Dispute:
    """A disputed order row and its case, without an escrow: for pages and permissions, not money."""
    order = an_order(S.DISPUTED, **order)
    return Dispute.objects.create(
        order=order,
        opened_by=opened_by,
        reason="QUALITY_ISSUE",
        evidence=["The colours are not the ones we agreed."],
        status=status,
        respond_by=timezone.now() + timedelta(hours=72),
    )


def page_of(user, order) -> str:
    return logged_in(user).get(f"/orders/{order.public_id}/").content.decode()


def support_agent():
    return UserFactory(is_staff=True, display_name="Ana Agent")


# --- Opening with a file, both sides, the thread ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_buyer_opens_with_a_png_and_the_seller_answers_with_a_message_and_evidence(
    chain, funded_user, trustless_work, settings, tmp_path
):
    settings.PRIVATE_MEDIA_ROOT = str(tmp_path / "private")
    buyer, seller = funded_user("50.00"), funded_user("0")
    base = bought(buyer, seller)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    opened = buyer_client.post(
        base + "dispute/",
        {"reason": "QUALITY_ISSUE", "details": "The logo is blurry at any size.", "file": png()},
        follow=True,
    )
    assert "Dispute opened." in opened.content.decode()
    dispute = Dispute.objects.get()
    (evidence,) = DisputeEvidence.objects.all()
    assert (evidence.party, evidence.kind, evidence.file_name) == ("BUYER", "FILE", "broken-logo.png")
    assert Order.objects.get().status == S.DISPUTED

    page = seller_client.get(base).content.decode()
    thumbnail = f"/disputes/{dispute.public_id}/evidence/{evidence.public_id}/file/"
    assert 'data-testid="dispute-status">Open: waiting for support<' in page
    assert "Quality issue" in page and "The logo is blurry at any size." in page
    assert f'<img src="{thumbnail}"' in page and "broken-logo.png" in page
    assert "You have until" in page and "to answer" in page
    assert 'data-testid="dispute-message-form"' in page and 'data-testid="dispute-evidence-form"' in page
    assert 'accept=".pdf,.png,.jpg,.jpeg,.gif,.webp"' in page and 'enctype="multipart/form-data"' in page
    assert 'data-testid="dispute-withdraw-form"' not in page  # the seller did not open it
    assert 'http-equiv="refresh"' not in page  # without JavaScript, a reload would lose a message being typed
    served = seller_client.get(thumbnail)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content) == png_bytes()
    assert logged_in(UserFactory()).get(thumbnail).status_code == 404

    answered = seller_client.post(base + "dispute/messages/", {"body": "I sent the vector files too."}, follow=True)
    assert "Message sent" in answered.content.decode()
    seller_client.post(base + "dispute/evidence/", {"link": "https://files.example/logo.svg", "text": "Vector"})
    pdf = SimpleUploadedFile("invoice.pdf", b"%PDF-1.4\n" + b"x" * 2048, content_type="application/pdf")
    seller_client.post(base + "dispute/evidence/", {"file": pdf, "text": "What we agreed"})
    assert list(DisputeEvidence.objects.values_list("party", "kind")) == [
        ("BUYER", "FILE"),
        ("SELLER", "LINK"),
        ("SELLER", "FILE"),
    ]
    agent = support_agent()
    dispute_message_post(
        dispute=dispute, party="SUPPORT", actor=OrderActor.for_user(agent), body="Seller looks right.", internal=True
    )
    dispute_message_post(
        dispute=dispute, party="SUPPORT", actor=OrderActor.for_user(agent), body="Support here: looking at it."
    )

    page = buyer_client.get(base).content.decode()
    live = buyer_client.get(base + "live/").content.decode()
    for html in (page, live):
        assert "I sent the vector files too." in html and "Support here: looking at it." in html
        assert "Seller looks right." not in html  # an internal note is support's only
        assert '<a href="https://files.example/logo.svg" rel="noopener noreferrer nofollow" target="_blank">' in html
        assert "invoice.pdf</a>" in html and "2.0\xa0KB" in html
        assert f"{seller.display_name} (seller)" in html
        assert "answered on" in html  # the seller's first word stopped the clock
    assert 'data-testid="dispute-withdraw-form"' in page  # the buyer opened it, support has not taken it up


@pytest.mark.django_db
def test_an_outsider_and_support_cannot_post_to_the_case_from_the_order_page():
    dispute = a_case()
    order = dispute.order
    for path, body in (
        ("dispute/messages/", {"body": "hello"}),
        ("dispute/evidence/", {"text": "proof"}),
        ("dispute/withdraw/", {"confirm": "on"}),
    ):
        assert logged_in(UserFactory()).post(f"/orders/{order.public_id}/{path}", body).status_code == 404
        assert logged_in(support_agent()).post(f"/orders/{order.public_id}/{path}", body).status_code == 403
    assert not DisputeMessage.objects.exists() and not DisputeEvidence.objects.exists()
    assert Dispute.objects.get().status == Dispute.Status.OPEN
    assert logged_in(UserFactory()).get(f"/orders/{order.public_id}/live/").status_code == 404


@pytest.mark.django_db
def test_an_order_without_a_dispute_has_no_case_to_post_to():
    order = an_order(S.IN_PROGRESS)
    client = logged_in(order.buyer)
    assert client.post(f"/orders/{order.public_id}/dispute/messages/", {"body": "hello"}).status_code == 404
    assert 'data-testid="dispute-case"' not in page_of(order.buyer, order)


# --- Forms refused by field, what was typed kept -------------------------------------------------------


@pytest.mark.django_db
def test_refused_case_forms_come_back_with_the_error_in_place_and_the_text_kept():
    dispute = a_case()
    order, client = dispute.order, logged_in(dispute.order.seller)
    exe = SimpleUploadedFile("proof.exe", b"MZ\x90\x00", content_type="application/octet-stream")
    response = client.post(f"/orders/{order.public_id}/dispute/evidence/", {"text": "Here is my proof", "file": exe})
    page = response.content.decode()
    assert response.status_code == 200
    assert "“proof.exe” is not a file type we accept" in page
    assert ">\nHere is my proof</textarea>" in page and "choose it again" in page

    response = client.post(f"/orders/{order.public_id}/dispute/evidence/", {"text": "", "link": "not a link"})
    assert "Enter a valid URL." in response.content.decode() and 'value="not a link"' in response.content.decode()
    response = client.post(f"/orders/{order.public_id}/dispute/evidence/", {"text": " "})
    assert "Write something, or add a link or a file." in response.content.decode()
    response = client.post(f"/orders/{order.public_id}/dispute/messages/", {"body": "x" * 2001})
    assert response.status_code == 200 and "at most 2000 characters" in response.content.decode()
    assert not DisputeEvidence.objects.exists() and not DisputeMessage.objects.exists()

    # A refusal of the service itself lands on its field the same way.
    DisputeEvidence.objects.bulk_create(
        DisputeEvidence(dispute=dispute, party="SELLER", kind="TEXT", text=f"proof {n}") for n in range(30)
    )
    response = client.post(f"/orders/{order.public_id}/dispute/evidence/", {"text": "One more proof"})
    page = response.content.decode()
    assert response.status_code == 200 and "At most 30 pieces of evidence each." in page
    assert 'aria-invalid="true" aria-describedby="evidence-text_error"' in page and "One more proof</textarea>" in page
    assert DisputeEvidence.objects.count() == 30


@pytest.mark.django_db
def test_a_refused_dispute_file_opens_nothing_and_keeps_the_details():
    order = an_order(S.IN_PROGRESS)
    fake = SimpleUploadedFile("photo.png", b"not really a png", content_type="image/png")
    response = logged_in(order.buyer).post(
        f"/orders/{order.public_id}/dispute/", {"reason": "QUALITY_ISSUE", "details": "Blurry", "file": fake}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "“photo.png” does not look like a PNG file." in page
    assert ">Blurry</textarea>" in page and 'id="dispute-file-error"' in page
    assert Order.objects.get().status == S.IN_PROGRESS and not Dispute.objects.exists()


# --- Withdrawing -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_opener_withdraws_after_confirming_and_the_order_goes_on(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    base = bought(buyer, seller)
    buyer_client = logged_in(buyer)
    buyer_client.post(base + "dispute/", {"reason": "NOT_DELIVERED", "details": "Nothing yet"})
    page = buyer_client.get(base).content.decode()
    assert "OfferHub makes this order's payouts itself" in page  # said before withdrawing
    assert not {"blockchain", "flag", "stellar", "trustless"} & set(re.findall(r"[a-z]+", page.lower()))

    assert logged_in(seller).post(base + "dispute/withdraw/", {"confirm": "on"}).status_code == 403
    unconfirmed = buyer_client.post(base + "dispute/withdraw/", {})
    assert unconfirmed.status_code == 200
    assert "Tick the box to confirm that you withdraw the dispute." in unconfirmed.content.decode()
    assert Dispute.objects.get().status == Dispute.Status.OPEN

    withdrawn = buyer_client.post(base + "dispute/withdraw/", {"confirm": "on"}, follow=True)
    page = withdrawn.content.decode()
    assert "Dispute withdrawn. The order goes on as before." in page
    assert 'data-testid="dispute-status">Withdrawn<' in page and 'role="status">In progress<' in page
    assert "Dispute withdrawn: the order goes on" in page  # the timeline says it too
    assert 'data-testid="dispute-forms"' not in page
    assert Dispute.objects.get().status == Dispute.Status.WITHDRAWN
    assert Order.objects.get().status == S.IN_PROGRESS
    assert Escrow.objects.get().status == Escrow.Status.DISPUTED  # the chain keeps its flag
    again = buyer_client.post(base + "dispute/messages/", {"body": "one more thing"}, follow=True)
    assert "The dispute is withdrawn: no more messages can be posted." in again.content.decode()


@pytest.mark.django_db
def test_a_dispute_under_review_can_no_longer_be_withdrawn():
    dispute = a_case(Dispute.Status.UNDER_REVIEW, opened_by="SELLER")
    order, client = dispute.order, logged_in(dispute.order.seller)
    assert 'data-testid="dispute-withdraw-form"' not in page_of(order.seller, order)
    response = client.post(f"/orders/{order.public_id}/dispute/withdraw/", {"confirm": "on"}, follow=True)
    assert "The dispute is under review by support: it can no longer be withdrawn." in response.content.decode()
    assert Dispute.objects.get().status == Dispute.Status.UNDER_REVIEW


# --- Deadline and outcome ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_deadline_says_who_answers_by_when_and_when_it_is_overdue():
    dispute = a_case()
    order = dispute.order
    assert "The seller has until" in page_of(order.buyer, order)
    assert "You have until" in page_of(order.seller, order)
    Dispute.objects.filter(pk=dispute.pk).update(respond_by=timezone.now() - timedelta(hours=1))
    assert "The seller did not answer by" in page_of(order.buyer, order)
    assert "You did not answer by" in page_of(order.seller, order)
    Dispute.objects.filter(pk=dispute.pk).update(responded_at=timezone.now())
    assert "The seller answered on" in page_of(order.buyer, order)


@pytest.mark.django_db(transaction=True)
def test_the_outcome_shows_what_each_side_received_after_fees_and_evidence_is_refused_after_it(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    base = bought(buyer, seller)
    buyer_client, seller_client = logged_in(buyer), logged_in(seller)
    buyer_client.post(base + "dispute/", {"reason": "QUALITY_ISSUE", "details": "Half of it is missing"})
    agent = support_agent()
    dispute = dispute_assign(dispute=Dispute.objects.get(), agent=agent.email, actor=OrderActor.for_user(agent))
    assert 'data-testid="dispute-status">Under review by support<' in buyer_client.get(base).content.decode()
    dispute_resolve(
        dispute=dispute,
        decision="SPLIT",
        release_amount=18 * USD,
        refund_amount=12 * USD,
        note="Half was delivered.",
        actor=OrderActor.for_user(agent),
    )
    assert Order.objects.get().status == S.CLOSED
    percent = Escrow.objects.get().platform_fee_percent
    seller_net = escrow_fees(amount=18 * USD, platform_fee_percent=percent).net
    buyer_net = escrow_fees(amount=12 * USD, platform_fee_percent=percent).net
    assert user_accounts(seller)[0].balance == seller_net
    assert user_accounts(buyer)[0].balance == 70 * USD + buyer_net

    seller_page = seller_client.get(base).content.decode()
    buyer_page = buyer_client.get(base + "live/").content.decode()
    seller_fees, buyer_fees = 18 - money_dollars(seller_net), 12 - money_dollars(buyer_net)
    assert f"You received <strong>${money_dollars(seller_net)}</strong> after escrow fees of ${seller_fees}" in (
        seller_page
    )
    assert f"The buyer received <strong>${money_dollars(buyer_net)}</strong> after escrow fees of ${buyer_fees}" in (
        seller_page
    )
    assert f"You received <strong>${money_dollars(buyer_net)}</strong>" in buyer_page
    assert "Support decided to split the payment" in buyer_page and "Half was delivered." in buyer_page
    assert 'data-testid="dispute-status">Resolved<' in buyer_page and 'data-testid="dispute-forms"' not in buyer_page

    refused = seller_client.post(base + "dispute/evidence/", {"text": "Too late?"}, follow=True)
    assert "The dispute is resolved: no more evidence can be added." in refused.content.decode()
    assert not DisputeEvidence.objects.exists()


# --- Queries ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 12])
@pytest.mark.django_db
def test_the_order_page_of_a_big_case_costs_the_same_queries(count, django_assert_max_num_queries):
    dispute = a_case()
    order = dispute.order
    for n in range(count):
        party = "BUYER" if n % 2 else "SELLER"
        DisputeEvidence.objects.create(dispute=dispute, party=party, kind="TEXT", text=f"evidence {n}")
        DisputeEvidence.objects.create(
            dispute=dispute, party=party, kind="FILE", file=f"disputes/x/{n}.png", file_name=f"{n}.png", file_size=99
        )
        DisputeMessage.objects.create(dispute=dispute, party=party, body=f"message {n}")
        DisputeMessage.objects.create(dispute=dispute, party="SUPPORT", body=f"note {n}", internal=True)
    client = logged_in(order.buyer)
    with django_assert_max_num_queries(8):
        page = client.get(f"/orders/{order.public_id}/").content.decode()
    with django_assert_max_num_queries(8):
        live = client.get(f"/orders/{order.public_id}/live/").content.decode()
    for html in (page, live):
        assert html.count('data-testid="dispute-evidence"') == 2 * count
        assert html.count('data-testid="dispute-message"') == count
        assert "note 0" not in html
