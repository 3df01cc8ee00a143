"""Catalogue pages served from the per-process cache (marketplace.catalog_pages): shared between
visitors, each seeing themselves and their own CSRF token; every write to the catalogue, by any
path, on the next load; nothing a rolled-back transaction wrote ever served."""

import re

import pytest
from django.contrib import messages
from django.contrib.auth.models import update_last_login
from django.contrib.messages.storage.base import Message
from django.contrib.messages.storage.session import SessionStorage
from django.db import connection, transaction
from django.middleware.csrf import CSRF_ALLOWED_CHARS, _get_new_csrf_string, _unmask_cipher_token
from django.test import Client, RequestFactory

from marketplace.catalog_pages import CSRF_PLACEHOLDER, ViewerNotShared, catalog_page, catalog_version, csrf_token
from marketplace.models import Category, Listing, Order, Review, User
from tests.factories import CategoryFactory, ListingFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = ["/", "/listings/", "/listings/?q=logo&sort=price_low"]


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def title_shown(client: Client, path: str, title: str) -> bool:
    return title in client.get(path).content.decode()


@pytest.mark.parametrize("path", PAGES)
def test_one_cached_page_each_visitor_sees_themselves_in(path, django_assert_num_queries):
    ListingFactory(title="Logo in a day")
    ada, bob = UserFactory(display_name="Ada Buyer"), UserFactory(display_name="Bob Buyer", is_staff=True)
    first = logged_in(ada).get(path).content.decode()
    bob_client = logged_in(bob)
    with django_assert_num_queries(1):  # the session, its member and the catalogue's version: cached
        second = bob_client.get(path).content.decode()
    anonymous = Client().get(path).content.decode()
    assert "Logo in a day" in first and "Logo in a day" in second and "Logo in a day" in anonymous
    assert "Signed in as <strong>Ada Buyer</strong>" in first and "Bob Buyer" not in first
    assert "Signed in as <strong>Bob Buyer</strong>" in second and "Ada Buyer" not in second
    assert "Backoffice" in second and "Backoffice" not in first  # the staff member's link, theirs alone
    assert "Signed in" not in anonymous and "Log in" in anonymous
    for page in (first, second, anonymous):
        assert CSRF_PLACEHOLDER not in page and "<!--viewer-" not in page


def test_the_token_on_a_cached_page_is_the_visitors_own_and_works():
    ListingFactory()
    ada = UserFactory()
    client = logged_in(ada, enforce_csrf_checks=True)
    client.get("/listings/")  # cached now
    page = client.get("/listings/").content.decode()
    tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page))
    tokens |= set(re.findall(r'"X-CSRFToken": "([^"]+)"', page))
    assert len(tokens) == 1
    # Log out with the token the cached page carried: accepted, and the visitor is logged out.
    response = client.post("/accounts/logout/", {"csrfmiddlewaretoken": tokens.pop()})
    assert response.status_code == 302
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_a_cached_page_s_token_is_the_secret_masked_afresh_each_time():
    """csrf_token masks as Django's get_token does (Django unmasks it to the secret), with a new
    mask every time, drawn evenly from the allowed characters."""
    request = RequestFactory().get("/")
    request.META["CSRF_COOKIE"] = secret = _get_new_csrf_string()
    tokens = {csrf_token(request) for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert len(token) == 64 and set(token) <= set(CSRF_ALLOWED_CHARS)
        assert _unmask_cipher_token(token) == secret
    assert request.META["CSRF_COOKIE_NEEDS_UPDATE"]  # the cookie's expiry renewed, as Django does
    masks = "".join(token[:32] for token in tokens)
    assert set(masks) == set(CSRF_ALLOWED_CHARS)
    assert max(masks.count(char) for char in CSRF_ALLOWED_CHARS) < 3 * len(masks) / len(CSRF_ALLOWED_CHARS)
    fresh = RequestFactory().get("/")  # no secret yet: Django's get_token makes one
    assert _unmask_cipher_token(csrf_token(fresh)) == fresh.META["CSRF_COOKIE"]


@pytest.mark.parametrize("path", ["/", "/listings/"])
def test_every_write_path_to_the_catalogue_shows_on_the_next_load(path):
    seller = UserFactory(display_name="Sam Seller")
    category = CategoryFactory(name="Design")
    listing = ListingFactory(title="Logo in a day", seller=seller, category=category)
    client = Client()
    assert title_shown(client, path, "Logo in a day")
    Listing.objects.filter(pk=listing.pk).update(title="Logo by tonight")  # a bulk update: no signal
    assert title_shown(client, path, "Logo by tonight") and not title_shown(client, path, "Logo in a day")
    with connection.cursor() as cursor:  # raw SQL
        cursor.execute("UPDATE marketplace_listing SET title = 'Logo by noon' WHERE id = %s", [listing.pk])
    assert title_shown(client, path, "Logo by noon")
    User.objects.filter(pk=seller.pk).update(display_name="Samantha")
    assert title_shown(client, path, "by Samantha")
    Category.objects.filter(pk=category.pk).update(name="Branding")
    assert title_shown(client, path, "Branding")
    User.objects.filter(pk=seller.pk).update(is_active=False)  # a seller no longer in good standing
    assert not title_shown(client, path, "Logo by noon")
    User.objects.filter(pk=seller.pk).update(is_active=True)
    Listing.objects.filter(pk=listing.pk).update(status=Listing.Status.PAUSED)
    assert not title_shown(client, path, "Logo by noon")


def test_a_review_hidden_by_support_leaves_the_cards():
    listing = ListingFactory(title="Logo in a day")
    order = Order.objects.create(
        buyer=UserFactory(), seller=listing.seller, listing=listing, amount=10, title=listing.title
    )
    review = Review.objects.create(order=order, listing=listing, seller=listing.seller, buyer=order.buyer, rating=2)
    client = Client()
    assert 'data-testid="card-rating"' in client.get("/listings/").content.decode()
    Review.objects.filter(pk=review.pk).update(hidden=True)
    assert 'data-testid="card-rating"' not in client.get("/listings/").content.decode()


def test_what_a_rolled_back_transaction_showed_is_never_served():
    listing = ListingFactory(title="Logo in a day")
    client = Client()
    assert title_shown(client, "/listings/", "Logo in a day")
    with pytest.raises(RuntimeError), transaction.atomic():
        Listing.objects.filter(pk=listing.pk).update(title="Never committed")
        assert title_shown(client, "/listings/", "Never committed")  # cached under a version...
        raise RuntimeError("rolled back")
    assert title_shown(client, "/listings/", "Logo in a day")  # ...that is gone with it
    Listing.objects.filter(pk=listing.pk).update(title="Logo by tonight")  # a new version, never that one
    assert title_shown(client, "/listings/", "Logo by tonight")


def test_what_orders_and_logins_write_leaves_the_version_alone():
    listing = ListingFactory()
    buyer = UserFactory()
    before = catalog_version(RequestFactory().get("/"))  # no session: the version's own read
    update_last_login(None, buyer)
    User.objects.filter(pk=buyer.pk).update(metadata={"note": "x"}, airtm_email="buyer@example.test")
    Order.objects.create(buyer=buyer, seller=listing.seller, listing=listing, amount=10, title="An order")
    assert catalog_version(RequestFactory().get("/")) == before


def test_messages_are_shown_once_and_never_cached():
    ListingFactory()
    client = logged_in(UserFactory())
    request = client.get("/listings/").wsgi_request  # the page is cached now
    # A message waiting in the session, as a view leaves one before its redirect.
    session = client.session
    waiting = [Message(messages.SUCCESS, "Your listing is live.")]
    session["_messages"] = SessionStorage(request).serialize_messages(waiting)
    session.save()
    assert "Your listing is live." in client.get("/listings/").content.decode()
    assert "Your listing is live." not in client.get("/listings/").content.decode()


def test_a_shared_part_that_reads_the_visitor_fails_loudly():
    request = RequestFactory().get("/")
    request.user = UserFactory()
    request.session = {}
    request._messages = messages.storage.default_storage(request)
    with pytest.raises(ViewerNotShared):
        catalog_page(request, "marketplace/_home_viewer.html", dict)
