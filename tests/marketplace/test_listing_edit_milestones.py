"""Editing a listing keeps the milestones the seller did not touch (issue 9: they were dropped on save).

The edit page is read and posted back as a browser would: the management form and every row as rendered,
unchanged rows with their initial values, only the fields a seller changed differing.
"""

from decimal import Decimal

import pytest

from escrow.models import Escrow
from marketplace.listings import MilestoneSpec, listing_create
from marketplace.models import Listing
from marketplace.orders import order_checkout
from tests.factories import CategoryFactory, UserFactory
from tests.marketplace.browser_form import browser_form

MILESTONES = [("Concepts", "40.50"), ("Revisions", "30.00"), ("Final files", "50.00")]


def listing_with_milestones(seller, milestones=MILESTONES, price="120.50") -> Listing:
    return listing_create(
        seller=seller,
        title="A logo for your shop",
        description="Three concepts, then the chosen one polished.",
        price=Decimal(price),
        category=CategoryFactory(name="Design", slug="design"),
        delivery_days=5,
        delivery_terms="Files as a ZIP link.",
        milestones=[MilestoneSpec(title=title, amount=Decimal(amount)) for title, amount in milestones],
    )


def stored_milestones(listing: Listing) -> list[tuple[str, int]]:
    return list(Listing.objects.get(pk=listing.pk).milestones.values_list("title", "amount_cents"))


def edit_page_form(client, listing: Listing) -> dict[str, list[str]]:
    page = client.get(f"/listings/{listing.public_id}/edit/")
    assert page.status_code == 200
    return browser_form(page.content.decode(), containing="milestones-TOTAL_FORMS")


def add_row_as_the_page_script_does(data: dict[str, list[str]], title: str, amount: str) -> None:
    index = int(data["milestones-TOTAL_FORMS"][0])
    data[f"milestones-{index}-title"], data[f"milestones-{index}-amount"] = [title], [amount]
    data["milestones-TOTAL_FORMS"] = [str(index + 1)]


def save(client, listing: Listing, data: dict[str, list[str]]):
    return client.post(f"/listings/{listing.public_id}/edit/", data)


@pytest.fixture
def seller():
    return UserFactory(display_name="Sam Seller")


@pytest.fixture
def seller_client(client, seller):
    client.force_login(seller)
    return client


@pytest.mark.django_db
def test_the_edit_page_posts_every_row_with_its_initial_values(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    assert data["milestones-TOTAL_FORMS"] == ["3"] and data["milestones-INITIAL_FORMS"] == ["3"]
    assert [(data[f"milestones-{i}-title"], data[f"milestones-{i}-amount"]) for i in range(3)] == [
        (["Concepts"], ["40.50"]),
        (["Revisions"], ["30.00"]),
        (["Final files"], ["50.00"]),
    ]
    assert "milestones-__prefix__-title" not in data and "milestones-0-DELETE" not in data


@pytest.mark.django_db
def test_editing_only_the_delivery_terms_keeps_every_milestone(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    data["delivery_terms"] = ["A shared folder, two rounds of revisions."]

    response = save(seller_client, listing, data)

    assert response.status_code == 302
    assert Listing.objects.get(pk=listing.pk).delivery_terms == "A shared folder, two rounds of revisions."
    assert stored_milestones(listing) == [("Concepts", 4050), ("Revisions", 3000), ("Final files", 5000)]
    detail = seller_client.get(response["Location"]).content.decode()
    assert "Paid in 3 milestones" in detail


@pytest.mark.django_db
def test_saving_the_edit_page_unchanged_keeps_everything(seller_client, seller):
    listing = listing_with_milestones(seller)
    before = Listing.objects.values("title", "description", "price_cents", "delivery_days", "delivery_terms").get()

    response = save(seller_client, listing, edit_page_form(seller_client, listing))

    assert response.status_code == 302
    after = Listing.objects.values("title", "description", "price_cents", "delivery_days", "delivery_terms").get()
    assert after == before
    assert stored_milestones(listing) == [("Concepts", 4050), ("Revisions", 3000), ("Final files", 5000)]


@pytest.mark.django_db
def test_one_amount_and_the_price_changed_together_count_the_unchanged_rows(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    data["price"] = ["150.50"]
    data["milestones-2-amount"] = ["80.00"]  # 40.50 + 30.00 (unchanged rows) + 80.00 = 150.50

    response = save(seller_client, listing, data)

    assert response.status_code == 302, response.context["milestones"].non_form_errors()
    assert Listing.objects.get(pk=listing.pk).price_cents == 15050
    assert stored_milestones(listing) == [("Concepts", 4050), ("Revisions", 3000), ("Final files", 8000)]


@pytest.mark.django_db
def test_a_sum_that_does_not_match_is_refused_naming_the_milestones(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    data["price"] = ["150.50"]  # the unchanged rows still add up to 120.50

    response = save(seller_client, listing, data)

    assert response.status_code == 200
    message = "Milestones: the amounts add up to $120.50; they must add up to the price, $150.50."
    assert response.context["milestones"].non_form_errors()[0].startswith(message)
    page = response.content.decode()
    assert message in page
    # Nothing saved, and the page shows what the seller sent to correct it.
    assert Listing.objects.get(pk=listing.pk).price_cents == 12050
    assert stored_milestones(listing) == [("Concepts", 4050), ("Revisions", 3000), ("Final files", 5000)]
    again = browser_form(page, containing="milestones-TOTAL_FORMS")
    assert again["price"] == ["150.50"] and again["milestones-2-amount"] == ["50.00"]


@pytest.mark.django_db
def test_removing_a_row_keeps_the_other_unchanged_rows(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    data["milestones-1-DELETE"] = ["on"]  # ticked "Remove"
    data["price"] = ["90.50"]  # 40.50 + 50.00, the rows left as they were

    response = save(seller_client, listing, data)

    assert response.status_code == 302
    assert stored_milestones(listing) == [("Concepts", 4050), ("Final files", 5000)]


@pytest.mark.django_db
def test_removing_every_row_makes_the_listing_single_release(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    for index in range(3):
        data[f"milestones-{index}-DELETE"] = ["on"]

    assert save(seller_client, listing, data).status_code == 302
    assert stored_milestones(listing) == []


@pytest.mark.django_db
def test_a_row_added_and_left_blank_is_ignored_and_a_filled_one_counts(seller_client, seller):
    listing = listing_with_milestones(seller)
    data = edit_page_form(seller_client, listing)
    add_row_as_the_page_script_does(data, "", "")
    assert save(seller_client, listing, data).status_code == 302
    assert stored_milestones(listing) == [("Concepts", 4050), ("Revisions", 3000), ("Final files", 5000)]

    data = edit_page_form(seller_client, listing)
    add_row_as_the_page_script_does(data, "Source files", "9.50")
    data["price"] = ["130.00"]
    assert save(seller_client, listing, data).status_code == 302
    assert stored_milestones(listing) == [
        ("Concepts", 4050),
        ("Revisions", 3000),
        ("Final files", 5000),
        ("Source files", 950),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_order_placed_after_the_edit_is_paid_in_the_listing_milestones(client, chain, funded_user, trustless_work):
    seller, buyer = funded_user("0"), funded_user("200.00")
    listing = listing_with_milestones(seller)
    client.force_login(seller)
    data = edit_page_form(client, listing)
    data["delivery_terms"] = ["A shared folder."]
    assert save(client, listing, data).status_code == 302

    order = order_checkout(buyer=buyer, listing=Listing.objects.get(pk=listing.pk), checkout_token="after-edit")

    assert [(m.ref, m.title, m.amount) for m in order.milestones.all()] == [
        ("m1", "Concepts", 4050 * 100_000),
        ("m2", "Revisions", 3000 * 100_000),
        ("m3", "Final files", 5000 * 100_000),
    ]
    escrow = Escrow.objects.get(engagement_id=order.public_id)
    assert escrow.type == Escrow.Type.MULTI
