"""The grid's cards are rendered once per process and reused (marketplace.listings.listing_cards):
every change to what a card shows is on the next page load."""

import pytest
from django.test import Client

from marketplace.models import ListingImage
from tests.factories import CategoryFactory, ListingFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def card_of(page: str, title: str) -> str:
    """The card holding `title`, from its <article> to its end."""
    at = page.index(title)
    return page[page.rindex("<article", 0, at) : page.index("</article>", at)]


@pytest.mark.parametrize("path", ["/listings/", "/"])
def test_every_change_a_card_shows_is_on_the_next_load(path):
    seller = UserFactory(display_name="Sam Seller")
    category = CategoryFactory(name="Design", icon="palette")
    listing = ListingFactory(title="Logo in a day", seller=seller, category=category, price_cents=5_000)
    client = Client()

    def card() -> str:
        return card_of(client.get(path).content.decode(), listing.title)

    first = card()
    assert "Sam Seller" in first and "$50.00" in first and "3 days" in first and "bi-palette" in first
    assert card() == first  # served again as it was

    listing.price_cents, listing.delivery_days = 123_456, 1
    listing.save()
    assert "$1,234.56" in card() and "1 day<" in card()
    seller.display_name = "Samantha"
    seller.save()
    assert "by Samantha" in card()
    category.name, category.icon = "Branding", "brush"
    category.save()
    assert "Branding" in card() and "bi-brush" in card()
    ListingImage.objects.create(listing=listing, image="listings/x/cover.png", width=40, height=30, position=1)
    assert 'src="/media/listings/x/cover.png"' in card() and 'width="40" height="30"' in card()
    ListingImage.objects.create(listing=listing, image="listings/x/first.png", width=8, height=6, position=0)
    assert 'src="/media/listings/x/first.png"' in card()  # the cover is the first image
    listing.title = "Logo in an hour"
    listing.save()
    assert "Logo in an hour" in card()


def test_a_title_is_escaped_in_the_card():
    ListingFactory(title="<script>alert(1)</script> logos")
    page = Client().get("/listings/").content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; logos" in page


def test_the_pages_count_and_answer_as_the_paginator_does():
    category = CategoryFactory()
    for n in range(30):
        ListingFactory(title=f"Listing {n:02}", category=category)
    client = Client()

    def page(number=None) -> str:
        return client.get("/listings/", {} if number is None else {"page": number}).content.decode()

    def cards(html: str) -> int:
        return html.count("<article")

    first = page()
    assert "30 services" in first and "Page 1 of 3" in first and cards(first) == 12
    assert "Page 2 of 3" in page(2) and cards(page(2)) == 12
    assert "Page 3 of 3" in page(3) and cards(page(3)) == 6
    for past_the_end in (4, 0, "1" * 20):
        assert "Page 3 of 3" in page(past_the_end), past_the_end  # the last page
    for not_a_number in ("abc", "", "2.5", "-1x"):
        assert "Page 1 of 3" in page(not_a_number), not_a_number  # the first page
