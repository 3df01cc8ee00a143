"""Listings as sellers write them and buyers find them, through the web views."""

import io
import random
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse
from PIL import Image

from marketplace.listings import MilestoneSpec, listing_create, listings_browse
from marketplace.models import Category, Listing, ListingImage, User
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from tests.factories import CategoryFactory, ListingFactory, ListingMilestoneFactory, UserFactory

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="full-text search runs on PostgreSQL (SQLite uses the fallback)"
)


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


@pytest.fixture
def seller():
    return UserFactory(display_name="Sam Seller")


@pytest.fixture
def seller_client(client, seller):
    client.force_login(seller)
    return client


@pytest.fixture
def category():
    return CategoryFactory(name="Design", slug="design", icon="palette")


def image_upload(name="photo.png", image_format="PNG", size=(40, 30), noise=False):
    image = Image.new("RGB", size, (200, 80, 40))
    if noise:  # incompressible, so the file is as large as its pixels
        rng = random.Random(7)
        image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def form_data(category, milestones=(), **overrides):
    data = {
        "title": "A logo for your shop",
        "category": category.pk,
        "description": "Three concepts, then the chosen one polished.",
        "price": "120.50",
        "delivery_days": "5",
        "delivery_terms": "Files as a ZIP link.",
        "milestones-TOTAL_FORMS": str(len(milestones)),
        "milestones-INITIAL_FORMS": "0",
        "milestones-MIN_NUM_FORMS": "0",
        "milestones-MAX_NUM_FORMS": "10",
    }
    for index, (title, amount) in enumerate(milestones):
        data[f"milestones-{index}-title"] = title
        data[f"milestones-{index}-amount"] = amount
    data.update(overrides)
    return data


# --- Sellers: create, edit, pause, delete --------------------------------------------


def test_a_seller_creates_a_listing_with_images_and_milestones(seller_client, seller, category):
    data = form_data(
        category,
        milestones=[("Concepts", "40.50"), ("Final files", "80.00")],
        images=[image_upload("cover.png"), image_upload("second.JPG", image_format="JPEG")],
    )
    response = seller_client.post("/listings/new/", data, follow=True)

    listing = Listing.objects.get()
    assert response.redirect_chain[-1][0] == f"/listings/{listing.public_id}/"
    assert listing.public_id.startswith("lst_") and len(listing.public_id) == 36
    assert (listing.seller, listing.category, listing.status) == (seller, category, Listing.Status.ACTIVE)
    assert listing.price_cents == 12050 and listing.price == Decimal("120.50")
    assert (listing.delivery_days, listing.delivery_terms) == (5, "Files as a ZIP link.")
    assert [(m.title, m.amount_cents) for m in listing.milestones.all()] == [("Concepts", 4050), ("Final files", 8000)]
    images = list(listing.images.all())
    assert [image.position for image in images] == [0, 1]
    # Stored through Django's storage, named by us after the decoded format.
    assert images[0].image.name.startswith(f"listings/{listing.public_id}/") and images[0].image.name.endswith(".png")
    assert images[1].image.name.endswith(".jpg") and default_storage.exists(images[1].image.name)
    assert (images[0].width, images[0].height) == (40, 30)
    assert str(listing) == f"A logo for your shop ({listing.public_id})"

    page = response.content.decode()
    assert "Your listing is live" in page
    assert "Sam Seller" in page and seller.email not in page
    assert "$120.50" in page and "Paid in 2 milestones" in page
    audit = AuditLog.objects.get(action="listing.created")
    assert (audit.resource_id, audit.actor_id, audit.payload_after["priceCents"]) == (
        listing.public_id,
        seller.public_id,
        12050,
    )


def test_the_new_listing_form_renders_for_members_and_asks_visitors_to_log_in(client, seller_client, category):
    page = seller_client.get("/listings/new/").content.decode()
    assert 'enctype="multipart/form-data"' in page and "csrfmiddlewaretoken" in page
    assert "Add a milestone" in page and 'accept="image/jpeg,image/png,image/webp"' in page
    assert "up to 5 MB each" in page
    anonymous = Client().get("/listings/new/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_a_seller_edits_a_listing(seller_client, seller, category, django_capture_on_commit_callbacks):
    seller_client.post("/listings/new/", form_data(category, images=[image_upload("a.png"), image_upload("b.png")]))
    listing = Listing.objects.get()
    first, second = listing.images.all()
    other = CategoryFactory(name="Development", slug="development")
    edit_page = seller_client.get(f"/listings/{listing.public_id}/edit/").content.decode()
    assert 'value="A logo for your shop"' in edit_page and 'value="120.50"' in edit_page

    with django_capture_on_commit_callbacks(execute=True):
        response = seller_client.post(
            f"/listings/{listing.public_id}/edit/",
            form_data(
                other,
                milestones=[("Half", "100.00"), ("Rest", "100.00")],
                title="A logo and a brand kit",
                price="200",
                remove_images=[first.pk],
                images=[image_upload("c.webp", image_format="WEBP")],
            ),
        )

    assert response.status_code == 302
    listing.refresh_from_db()
    assert (listing.title, listing.price_cents, listing.category) == ("A logo and a brand kit", 20000, other)
    assert [m.title for m in listing.milestones.all()] == ["Half", "Rest"]
    kept = list(listing.images.all())
    assert [image.pk for image in kept[:1]] == [second.pk]
    assert [image.position for image in kept] == [0, 1] and kept[1].image.name.endswith(".webp")
    assert not default_storage.exists(first.image.name)  # removed after commit
    audit = AuditLog.objects.get(action="listing.updated")
    assert audit.payload_before["priceCents"] == 12050 and audit.payload_after["priceCents"] == 20000


def test_pause_resume_and_soft_delete(seller_client, seller, category):
    listing = ListingFactory(seller=seller, category=category, title="Pausable service")
    visitor = Client()
    detail = f"/listings/{listing.public_id}/"

    response = seller_client.post(f"{detail}pause/", {"next": "/listings/mine/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/listings/mine/"
    assert "is paused" in response.content.decode() and "Resume" in response.content.decode()
    listing.refresh_from_db()
    assert listing.status == Listing.Status.PAUSED
    assert visitor.get(detail).status_code == 404
    assert "Pausable service" not in visitor.get("/listings/").content.decode()
    owner_view = seller_client.get(detail).content.decode()
    assert "This listing is paused: only you can see it." in owner_view

    seller_client.post(f"{detail}resume/")
    listing.refresh_from_db()
    assert listing.status == Listing.Status.ACTIVE and visitor.get(detail).status_code == 200

    confirm = seller_client.get(f"{detail}delete/").content.decode()
    assert "Delete “Pausable service”?" in confirm and "Pause</strong> it instead" in confirm
    response = seller_client.post(f"{detail}delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/listings/mine/"
    listing.refresh_from_db()
    assert listing.status == Listing.Status.DELETED and listing.deleted_at is not None  # the row stays
    assert seller_client.get(detail).status_code == 404
    assert seller_client.get(f"{detail}edit/").status_code == 404
    assert "Pausable service" not in seller_client.get("/listings/mine/").content.decode()
    actions = list(
        AuditLog.objects.filter(resource_id=listing.public_id).order_by("id").values_list("action", flat=True)
    )
    assert actions == ["listing.paused", "listing.resumed", "listing.deleted"]


def test_pause_and_delete_only_answer_post(seller_client, seller):
    listing = ListingFactory(seller=seller)
    assert seller_client.get(f"/listings/{listing.public_id}/pause/").status_code == 405
    seller_client.get(f"/listings/{listing.public_id}/delete/")  # a GET only asks to confirm
    listing.refresh_from_db()
    assert listing.status == Listing.Status.ACTIVE


def test_only_the_owner_may_change_a_listing(client, seller, category):
    listing = ListingFactory(seller=seller, category=category, title="Not yours")
    client.force_login(UserFactory())
    base = f"/listings/{listing.public_id}/"
    assert client.get(f"{base}edit/").status_code == 404
    assert client.post(f"{base}edit/", form_data(category, title="Hijacked")).status_code == 404
    assert client.post(f"{base}pause/").status_code == 404
    assert client.post(f"{base}resume/").status_code == 404
    assert client.get(f"{base}delete/").status_code == 404
    assert client.post(f"{base}delete/").status_code == 404
    listing.refresh_from_db()
    assert (listing.title, listing.status) == ("Not yours", Listing.Status.ACTIVE)
    page = client.get(base).content.decode()
    assert "This is your listing" not in page and f"{base}edit/" not in page


def test_listing_forms_are_csrf_protected(seller, category):
    listing = ListingFactory(seller=seller)
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(seller)
    assert csrf_client.post("/listings/new/", form_data(category)).status_code == 403
    assert csrf_client.post(f"/listings/{listing.public_id}/pause/").status_code == 403
    assert csrf_client.post(f"/listings/{listing.public_id}/delete/").status_code == 403
    assert Listing.objects.get().status == Listing.Status.ACTIVE


# --- Validation ------------------------------------------------------------------------


def test_a_text_file_renamed_png_is_refused(seller_client, category):
    fake = SimpleUploadedFile("notes.png", b"just some text, not an image", content_type="image/png")
    response = seller_client.post("/listings/new/", form_data(category, images=[fake]))
    assert response.status_code == 200
    assert response.context["form"].errors["images"] == ["“notes.png” is not a JPEG, PNG or WebP image we can read."]
    page = response.content.decode()
    assert 'id="id_images_error"' in page and 'aria-invalid="true"' in page
    assert 'value="A logo for your shop"' in page  # the rest of the input is kept
    assert "choose your images again" in page
    assert not Listing.objects.exists() and not ListingImage.objects.exists()


def test_real_images_of_other_formats_are_refused(seller_client, category):
    gif = image_upload("animation.png", image_format="GIF")
    errors = seller_client.post("/listings/new/", form_data(category, images=[gif])).context["form"].errors
    assert errors["images"] == ["“animation.png” is a GIF image; use JPEG, PNG or WebP."]
    assert not Listing.objects.exists()


def test_an_image_over_the_size_limit_is_refused(seller_client, category, settings):
    settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES = 10 * 1024
    large = image_upload("large.png", size=(100, 100), noise=True)
    assert large.size > settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES
    response = seller_client.post("/listings/new/", form_data(category, images=[large, image_upload("small.png")]))
    assert response.context["form"].errors["images"] == ["“large.png” is larger than 10 KB."]
    assert not Listing.objects.exists()
    assert not list(default_storage.listdir("")[0])  # nothing was stored for the refused listing


def test_too_many_images_are_refused(seller_client, category):
    uploads = [image_upload(f"{n}.png") for n in range(9)]
    errors = seller_client.post("/listings/new/", form_data(category, images=uploads)).context["form"].errors
    assert errors["images"] == ["A listing has at most 8 images; remove some first."]


def test_milestones_must_add_up_to_the_price(seller_client, category):
    response = seller_client.post(
        "/listings/new/", form_data(category, milestones=[("Draft", "40.00"), ("Final", "50.00")], price="100.00")
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Milestones: the amounts add up to $90.00; they must add up to the price, $100.00." in page
    assert not Listing.objects.exists()

    response = seller_client.post("/listings/new/", form_data(category, milestones=[("Draft", "")], price="100.00"))
    assert response.context["milestones"].errors[0] == {"amount": ["This field is required."]}
    assert not Listing.objects.exists()

    # A removed row does not count; the remaining ones add up.
    data = form_data(category, milestones=[("Draft", "40.00"), ("Final", "60.00"), ("Extra", "5.00")], price="100")
    data["milestones-2-DELETE"] = "on"
    assert seller_client.post("/listings/new/", data).status_code == 302
    assert [m.amount_cents for m in Listing.objects.get().milestones.all()] == [4000, 6000]


def test_the_service_checks_the_milestone_sum_itself(seller, category):
    with pytest.raises(ServiceError) as refused:
        listing_create(
            seller=seller,
            title="Direct",
            description="Called without the form.",
            price=Decimal("10.00"),
            category=category,
            delivery_days=1,
            milestones=[MilestoneSpec(title="Only part", amount=Decimal("9.99"))],
        )
    assert (refused.value.code, refused.value.field) == ("VALIDATION_ERROR", "milestones")
    assert not Listing.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", "0.50", "The price must be between $1.00 and $50,000.00."),
        ("price", "12.345", "Use at most two decimals (cents), such as 12.50."),
        ("price", "1e3", "Enter the amount in dollars with the digits 0-9, such as 100 or 12.50."),
        ("price", "", "This field is required."),
        ("delivery_days", "0", "Ensure this value is greater than or equal to 1."),
        ("title", "", "This field is required."),
    ],
)
def test_field_errors_name_the_field(seller_client, category, field, value, message):
    response = seller_client.post("/listings/new/", form_data(category, **{field: value}))
    assert response.context["form"].errors[field] == [message]
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not Listing.objects.exists()


# --- Buyers: browse, search, filter, sort, paginate -------------------------------------


def titles(response):
    return [listing.title for listing in response.context["page"].object_list]


def test_the_listing_page_shows_the_seller_and_the_price_in_dollars(client, category):
    listing = ListingFactory(
        title="<b>Bold</b> work", price_cents=123456, seller=UserFactory(display_name="Dana"), category=category
    )
    ListingMilestoneFactory(listing=listing, title="All of it", amount_cents=123456)
    page = client.get(f"/listings/{listing.public_id}/").content.decode()
    assert "$1,234.56" in page and ">Dana<" in page
    assert "&lt;b&gt;Bold&lt;/b&gt; work" in page and "<b>Bold</b>" not in page
    assert "Delivered within <strong>3 days</strong>" in page
    assert client.get("/listings/lst_doesnotexist/").status_code == 404


def test_the_buy_button_leads_to_checkout_once_it_exists(client):
    listing = ListingFactory()
    page = client.get(f"/listings/{listing.public_id}/").content.decode()
    try:
        checkout = reverse("checkout", args=[listing.public_id])
    except NoReverseMatch:
        assert 'type="button" disabled' in page and "Buy for $50.00" in page
    else:
        assert f'href="{checkout}"' in page


def test_only_active_listings_of_active_sellers_are_browsable(client):
    ListingFactory(title="Visible")
    ListingFactory(title="Paused one", status=Listing.Status.PAUSED)
    ListingFactory(title="Deleted one", status=Listing.Status.DELETED)
    suspended = ListingFactory(title="From a suspended seller", seller=UserFactory(status=User.Status.SUSPENDED))
    assert titles(client.get("/listings/")) == ["Visible"]
    assert client.get(f"/listings/{suspended.public_id}/").status_code == 404


@postgresql_only
def test_search_finds_words_in_the_title_and_the_description(client):
    ListingFactory(title="Logo design for startups", description="Vector files included.")
    ListingFactory(title="Website copywriting", description="Persuasive text; I can also sketch a logo.")
    ListingFactory(title="Bookkeeping", description="Monthly accounts.")
    ListingFactory(title="Paused logo", status=Listing.Status.PAUSED)

    # Stemmed ("logos" finds "logo"), and a title match ranks above a description match.
    assert titles(client.get("/listings/", {"q": "logos"})) == ["Logo design for startups", "Website copywriting"]
    assert titles(client.get("/listings/", {"q": "vector"})) == ["Logo design for startups"]
    assert titles(client.get("/listings/", {"q": "monthly accounts"})) == ["Bookkeeping"]
    assert titles(client.get("/listings/", {"q": "logo -startups"})) == ["Website copywriting"]
    assert titles(client.get("/listings/", {"q": "knitting"})) == []


@postgresql_only
def test_search_keeps_the_vector_current_when_a_listing_changes():
    listing = ListingFactory(title="Gardening")
    assert listings_browse(query="garden").count() == 1
    listing.title = "Plumbing"
    listing.save()
    assert listings_browse(query="garden").count() == 0 and listings_browse(query="plumbing").count() == 1


def test_the_search_fallback_without_postgresql(monkeypatch):
    """SQLite (`make run`) matches every word in the title or the description, title matches first."""
    monkeypatch.setattr("marketplace.listings.connection", SimpleNamespace(vendor="sqlite"))
    ListingFactory(title="Copywriting", description="I also draw a logo")
    ListingFactory(title="Logo design", description="Vector files")
    ListingFactory(title="Logo animation", description="Motion")
    assert [listing.title for listing in listings_browse(query="logo")] == [
        "Logo animation",
        "Logo design",
        "Copywriting",
    ]
    assert [listing.title for listing in listings_browse(query="LOGO vector")] == ["Logo design"]


def test_category_filter(client, category):
    other = CategoryFactory(name="Writing", slug="writing")
    ListingFactory(title="A design", category=category)
    ListingFactory(title="A text", category=other)
    response = client.get("/listings/", {"category": "writing"})
    assert titles(response) == ["A text"]
    page = response.content.decode()
    assert "1 service in Writing" in page and 'active" aria-current="page" href="?category=writing"' in page
    assert titles(client.get("/listings/", {"category": "no-such-category"})) == ["A text", "A design"]


def test_sorting(client):
    cheap = ListingFactory(title="Cheap", price_cents=1_000)
    dear = ListingFactory(title="Dear", price_cents=90_000)
    middle = ListingFactory(title="Middle", price_cents=5_000)
    assert titles(client.get("/listings/")) == [middle.title, dear.title, cheap.title]  # newest first
    assert titles(client.get("/listings/", {"sort": "price_asc"})) == ["Cheap", "Middle", "Dear"]
    assert titles(client.get("/listings/", {"sort": "price_desc"})) == ["Dear", "Middle", "Cheap"]
    response = client.get("/listings/", {"sort": "relevance"})  # no query: nothing to rank by
    assert response.context["sort"] == "newest" and titles(response) == ["Middle", "Dear", "Cheap"]
    assert titles(client.get("/listings/", {"sort": "bogus"})) == ["Middle", "Dear", "Cheap"]


def test_pagination_keeps_the_filters(client, category):
    for n in range(13):
        ListingFactory(title=f"Design {n:02}", category=category, price_cents=1_000 + n)
    ListingFactory(title="Elsewhere")
    response = client.get("/listings/", {"category": "design", "sort": "price_asc"})
    assert titles(response) == [f"Design {n:02}" for n in range(12)]
    page = response.content.decode()
    assert "13 services in Design" in page and "Page 1 of 2" in page
    assert 'href="?category=design&amp;sort=price_asc&amp;page=2"' in page
    second = client.get("/listings/", {"category": "design", "sort": "price_asc", "page": 2})
    assert titles(second) == ["Design 12"]
    assert titles(client.get("/listings/", {"category": "design", "page": 99})) == ["Design 00"]  # the last page


def test_empty_marketplace_invites_sellers(client, seller_client):
    page = client.get("/listings/").content.decode()
    assert "No listings yet" in page and 'href="/listings/new/"' in page and "Create the first listing" in page
    home = client.get("/").content.decode()
    assert "No listings yet. Be the first to offer a service." in home
    mine = seller_client.get("/listings/mine/").content.decode()
    assert "You have no listings yet" in mine and "Create your first listing" in mine


def test_no_results_say_so_and_offer_to_clear_the_filters(client, category):
    ListingFactory(title="Bookkeeping")
    page = client.get("/listings/", {"q": "zebra <i>"}).content.decode()
    assert "No results for “zebra &lt;i&gt;”" in page
    assert '<a class="btn btn-outline-primary" href="/listings/">Clear filters</a>' in page
    page = client.get("/listings/", {"category": category.slug}).content.decode()
    assert "No results for Design" in page and "No listings yet" not in page


def test_my_listings_shows_active_and_paused_ones_with_their_actions(seller_client, seller):
    ListingFactory(seller=seller, title="Running")
    ListingFactory(seller=seller, title="Resting", status=Listing.Status.PAUSED)
    ListingFactory(seller=seller, title="Gone", status=Listing.Status.DELETED)
    ListingFactory(title="Someone else's")
    response = seller_client.get("/listings/mine/")
    assert [listing.title for listing in response.context["page"].object_list] == ["Resting", "Running"]
    page = response.content.decode()
    assert 'text-bg-secondary">Paused' in page and 'text-bg-success">Active' in page
    assert "My listings" in seller_client.get("/").content.decode()  # in the navigation


def test_home_shows_the_latest_listings_and_the_categories(client, category):
    ListingFactory(title="Fresh on the market", category=category)
    page = client.get("/").content.decode()
    assert "Fresh on the market" in page and 'href="/listings/?category=design"' in page
    assert "Pay for work only when it" in page


# --- Query counts: no N+1 on the pages buyers load most ------------------------------------


def _listings_with_images_and_milestones(count, category):
    for n in range(count):
        listing = ListingFactory(title=f"Logo package {n}", category=category, seller=UserFactory())
        ListingImage.objects.create(listing=listing, image=f"listings/{listing.public_id}/x.png", width=4, height=3)
        ListingMilestoneFactory(listing=listing, amount_cents=2_500)
        ListingMilestoneFactory(listing=listing, amount_cents=2_500)
    return listing


@pytest.mark.parametrize("count", [5, 30])
def test_page_queries_do_not_grow_with_the_listings(client, category, django_assert_max_num_queries, count):
    listing = _listings_with_images_and_milestones(count, category)
    client.force_login(UserFactory())
    # The session with its member and the catalogue's version (one statement), page of listings
    # (covers and the total as columns), categories (+ the category filter's lookup); then the page
    # from the cache (marketplace.catalog_pages): that first statement alone.
    with django_assert_max_num_queries(3):
        assert len(titles(client.get("/listings/"))) == min(count, 12)
    with django_assert_max_num_queries(1):
        assert client.get("/listings/").content.decode().count("listing-card") == min(count, 12)
    with django_assert_max_num_queries(4):
        assert len(titles(client.get("/listings/", {"q": "logo package", "category": "design"}))) == min(count, 12)
    # The session with its member, the listing (seller, category, ratings and sales as columns),
    # images, milestones, its reviews, related listings.
    with django_assert_max_num_queries(6):
        assert client.get(f"/listings/{listing.public_id}/").status_code == 200
    with django_assert_max_num_queries(3):  # the session (member, version), latest listings, categories
        assert client.get("/").status_code == 200


# --- Support and demo data ----------------------------------------------------------------


def test_support_pauses_a_listing_from_the_backoffice(client):
    support = UserFactory(is_staff=True, is_superuser=True)
    listing = ListingFactory()
    ListingMilestoneFactory(listing=listing)
    client.force_login(support)
    change_page = client.get(reverse("admin:marketplace_listing_change", args=[listing.pk]))
    assert change_page.status_code == 200 and listing.public_id in change_page.content.decode()
    client.post(
        reverse("admin:marketplace_listing_changelist"), {"action": "pause_selected", "_selected_action": [listing.pk]}
    )
    listing.refresh_from_db()
    assert listing.status == Listing.Status.PAUSED
    audit = AuditLog.objects.get(action="listing.paused")
    assert (audit.actor_type, audit.actor_id) == (AuditLog.ActorType.SUPPORT, support.public_id)


def test_seed_demo_adds_categories_and_listings_once(client):
    from marketplace.management.commands.seed_demo import DEMO_LISTINGS, DEMO_SELLERS

    call_command("seed_demo")
    call_command("seed_demo")
    seller = User.objects.get(email="seller@demo.offerhub.test")
    assert Listing.objects.count() == len(DEMO_LISTINGS) == 11
    assert Listing.objects.filter(seller=seller).count() == 4
    assert all(
        sum(m.amount_cents for m in listing.milestones.all()) in (0, listing.price_cents)
        for listing in Listing.objects.all()
    )
    # Every demo listing has 1 to 3 real pictures (decoded here), every category one, every seller an avatar.
    for listing in Listing.objects.prefetch_related("images"):
        images = list(listing.images.all())
        assert 1 <= len(images) <= 3, listing.title
        with images[0].image.open() as stored, Image.open(stored) as picture:
            colours = picture.convert("RGB").getcolors(4096)  # None: more than 4,096 colours
            assert picture.size == (800, 600) and (colours is None or len(colours) > 50)
    assert all(category.image for category in Category.objects.all())
    for email in DEMO_SELLERS:
        member = User.objects.get(email=email)
        assert member.avatar and member.about and member.handle
    page = client.get("/listings/").content.decode()
    assert "11 services" in page and "Sam Seller" in page and "Lucía Ortega" in page
    assert page.count('<img src="/media/listings/') == 11
    home = client.get("/").content.decode()
    assert all(f'src="{category.image.url}"' in home for category in Category.objects.all())
