"""Reviews (once per finished order, by its buyer; one reply by its seller; hidden by support with a
reason), the ratings computed from them, seller profiles and handles, and the pages' query counts."""

import io
import itertools
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse
from PIL import Image

from backoffice.roles import SUPPORT_AGENT
from marketplace.listings import listing_cards, listings_browse
from marketplace.models import Listing, ListingImage, Order, Review, User, handle_free, handles_free, user_insert
from marketplace.reviews import (
    Rating,
    review_create,
    review_hide,
    review_reply,
    seller_by_handle,
    user_profile_update,
)
from marketplace.services import user_create_from_api, user_sign_up
from offerhub.errors import ServiceError
from offerhub.models import AuditLog
from tests.factories import CategoryFactory, ListingFactory, UserFactory

pytestmark = pytest.mark.django_db
S = Order.Status
USD = 10_000_000


def an_order(status=S.RELEASED, *, listing=None, buyer=None, seller=None, **extra) -> Order:
    """An order row in `status` (no escrow behind it): reviews read only its parties and status."""
    listing = listing or ListingFactory(seller=seller or UserFactory())
    return Order.objects.create(
        buyer=buyer or UserFactory(),
        seller=listing.seller,
        listing=listing,
        amount=50 * USD,
        title=listing.title,
        status=status,
        **extra,
    )


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def png(size=(600, 400), colour=(200, 80, 40)) -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return SimpleUploadedFile("me.png", out.getvalue(), content_type="image/png")


# --- Services -------------------------------------------------------------------------------------------


def test_the_buyer_reviews_a_finished_order_once_and_it_is_audited():
    order = an_order()
    review = review_create(order=order, buyer=order.buyer, rating=4, body="  Quick and clear.  ")
    assert (review.rating, review.body, review.seller, review.listing) == (
        4,
        "Quick and clear.",
        order.seller,
        order.listing,
    )
    audit = AuditLog.objects.get(action="review.created")
    assert (audit.actor_id, audit.resource_id, audit.payload_after) == (
        order.buyer.public_id,
        review.public_id,
        {"order": order.public_id, "rating": 4},
    )
    with pytest.raises(ServiceError) as again:
        review_create(order=order, buyer=order.buyer, rating=5, body="Twice")
    assert again.value.code == "ALREADY_REVIEWED"
    assert Review.objects.count() == 1


@pytest.mark.parametrize(
    ("status", "outcome", "allowed"),
    [
        (S.RELEASED, "", True),
        (S.REFUNDED, "", True),  # a dispute settled for the buyer: still worth a word
        (S.CLOSED, Order.Outcome.RELEASED, True),
        (S.CLOSED, Order.Outcome.REFUNDED, True),
        (S.CLOSED, Order.Outcome.CANCELED, False),  # never paid: nothing to review
        (S.IN_PROGRESS, "", False),
        (S.DISPUTED, "", False),
        (S.RELEASE_REQUESTED, "", False),
    ],
)
def test_only_a_finished_order_can_be_reviewed(status, outcome, allowed):
    order = an_order(status, outcome=outcome)
    if allowed:
        assert review_create(order=order, buyer=order.buyer, rating=5, body="Great")
    else:
        with pytest.raises(ServiceError) as refused:
            review_create(order=order, buyer=order.buyer, rating=5, body="Great")
        assert refused.value.code == "INVALID_STATE"


def test_only_the_buyer_reviews_and_the_input_is_bounded():
    order = an_order()
    for someone in (order.seller, UserFactory()):
        with pytest.raises(ServiceError) as refused:
            review_create(order=order, buyer=someone, rating=5, body="Great")
        assert refused.value.code == "FORBIDDEN"
    for rating in (0, 6, True, "5"):
        with pytest.raises(ServiceError) as refused:
            review_create(order=order, buyer=order.buyer, rating=rating, body="Great")
        assert refused.value.field == "rating"
    for body in ("   ", "x" * (Review.BODY_MAX_LENGTH + 1)):
        with pytest.raises(ServiceError) as refused:
            review_create(order=order, buyer=order.buyer, rating=3, body=body)
        assert refused.value.field == "body"
    assert not Review.objects.exists()


def test_only_the_seller_replies_once():
    order = an_order()
    review = review_create(order=order, buyer=order.buyer, rating=2, body="Late by two days.")
    for someone in (order.buyer, UserFactory(), UserFactory(is_staff=True)):
        with pytest.raises(ServiceError) as refused:
            review_reply(review=review, seller=someone, reply="Sorry")
        assert refused.value.code == "FORBIDDEN"
    with pytest.raises(ServiceError) as empty:
        review_reply(review=review, seller=order.seller, reply=" ")
    assert empty.value.field == "reply"
    review = review_reply(review=review, seller=order.seller, reply="The files were waiting on your answer.")
    assert review.reply == "The files were waiting on your answer." and review.replied_at is not None
    with pytest.raises(ServiceError) as again:
        review_reply(review=review, seller=order.seller, reply="And another thing")
    assert again.value.code == "ALREADY_REPLIED"
    assert AuditLog.objects.filter(action="review.replied", actor_id=order.seller.public_id).count() == 1


def test_support_hides_a_review_with_a_reason_and_it_leaves_every_average():
    listing = ListingFactory()
    first, second = an_order(listing=listing), an_order(listing=listing)
    kind = review_create(order=first, buyer=first.buyer, rating=5, body="Lovely work")
    rude = review_create(order=second, buyer=second.buyer, rating=5, body="Lovely work, again")
    agent = UserFactory(is_staff=True)
    with pytest.raises(ServiceError) as not_staff:
        review_hide(review=rude, actor=listing.seller, reason="mine")
    assert not_staff.value.code == "FORBIDDEN"
    with pytest.raises(ServiceError) as no_reason:
        review_hide(review=rude, actor=agent, reason="  ")
    assert no_reason.value.field == "reason"
    Review.objects.filter(pk=rude.pk).update(rating=1, body="Personal data of the seller")
    rude.refresh_from_db()
    seller = seller_by_handle(handle=listing.seller.handle)
    assert (seller.rating_average, seller.rating_count) == (3, 2)

    review_hide(review=rude, actor=agent, reason="Personal data")
    review_hide(review=rude, actor=agent, reason="Pressed twice")  # nothing changes, nothing recorded twice
    rude.refresh_from_db()
    assert (rude.hidden, rude.hidden_reason) == (True, "Personal data")
    audit = AuditLog.objects.get(action="review.hidden")
    assert (audit.actor_type, audit.actor_id, audit.payload_after) == (
        "SUPPORT",
        agent.public_id,
        {"hidden": True, "reason": "Personal data"},
    )
    seller = seller_by_handle(handle=listing.seller.handle)
    assert (seller.rating_average, seller.rating_count) == (5, 1)
    # The seller posting a reply to it directly (the page offers none) is refused: nothing is published.
    response = logged_in(listing.seller).post(
        reverse("order-review-reply", args=[second.public_id]), {"reply": "How dare you"}, follow=True
    )
    assert "Support has hidden this review" in response.content.decode()
    assert Review.objects.get(pk=rude.pk).reply == ""
    with pytest.raises(ServiceError) as hidden:
        review_reply(review=rude, seller=listing.seller, reply="How dare you")
    assert hidden.value.code == "INVALID_STATE"
    for page in (f"/listings/{listing.public_id}/", f"/sellers/{listing.seller.handle}/"):
        html = Client().get(page).content.decode()
        assert "Lovely work" in html and "Personal data of the seller" not in html, page
        assert "Lovely work, again" not in html, page
        assert "(1 review)" in html, page
    assert kind.hidden is False


def test_a_rating_rounds_and_draws_its_stars():
    assert Rating.of(Decimal("4.25"), 4).average == Decimal("4.3")
    assert Rating.of(Decimal("4.25"), 4).stars == ["star-fill"] * 4 + ["star-half"]
    assert Rating.of(Decimal("3.8"), 2).stars == ["star-fill"] * 4 + ["star"]
    assert Rating.of(None, 0) == Rating(None, 0)


# --- Handles and profiles -------------------------------------------------------------------------------


def test_every_member_gets_a_unique_handle():
    first = UserFactory(display_name="Sam Seller")
    second = UserFactory(display_name="Sam  Seller!")
    third = UserFactory(display_name="sam seller")
    assert [first.handle, second.handle, third.handle] == ["sam-seller", "sam-seller-2", "sam-seller-3"]
    assert UserFactory(display_name="Lucía Ortega").handle == "lucia-ortega"
    assert UserFactory(display_name="✨").handle == "member"
    assert handle_free("Sam Seller") == "sam-seller-4"
    api_user, _ = user_create_from_api(
        external_user_id="ext-1", email=None, user_type="BOTH", metadata={}, marketplace_id="", actor_id="key_x"
    )
    assert api_user.handle.startswith("ext-1-") and len(api_user.handle) == len("ext-1-") + 4


def test_a_handle_taken_meanwhile_is_retried_and_not_reported_as_an_email_taken():
    UserFactory(display_name="Taken", handle="ext-2-aaaa")
    # The API's random tail drew a handle someone has: the next one is tried, in the same request.
    api_user, created = user_create_from_api(
        external_user_id="ext-2",
        email="ext2@example.test",
        user_type="BOTH",
        metadata={},
        marketplace_id="",
        actor_id="key_x",
        handles=iter(["ext-2-aaaa", "ext-2-bbbb"]),
    )
    assert created and api_user.handle == "ext-2-bbbb" and User.objects.filter(external_user_id="ext-2").count() == 1
    with pytest.raises(ServiceError) as taken:  # a taken e-mail is still that
        user_create_from_api(
            external_user_id="ext-3",
            email="EXT2@example.test",
            user_type="BOTH",
            metadata={},
            marketplace_id="",
            actor_id="key_x",
            handles=iter(["ext-3-aaaa"]),
        )
    assert taken.value.code == "USER_ALREADY_EXISTS" and taken.value.field == "email"
    with pytest.raises(IntegrityError):  # no free handle in the tries: not blamed on the e-mail
        user_create_from_api(
            external_user_id="ext-4",
            email=None,
            user_type="BOTH",
            metadata={},
            marketplace_id="",
            actor_id="key_x",
            handles=iter(["ext-2-aaaa"] * 10),
        )


def test_a_sign_up_whose_handle_was_taken_after_the_look_up_takes_the_next_one():
    UserFactory(display_name="Sam Seller")
    stale = handle_free("Sam Seller")  # "sam-seller-2", looked up...
    UserFactory(display_name="Sam Seller")  # ...then another sign-up takes it before our row goes in
    late = User(email="late@example.test", display_name="Sam Seller")
    user_insert(late, handles=itertools.chain([stale], handles_free("Sam Seller")))
    assert User.objects.get(email="late@example.test").handle == "sam-seller-3"


def test_a_sign_up_with_an_email_taken_meanwhile_is_refused_by_the_field():
    UserFactory(email="both@example.test")
    with pytest.raises(ServiceError) as taken:  # the form had found it free a moment before
        user_sign_up(email="Both@example.test", display_name="Second", password="a-long-unique-passphrase")
    assert (taken.value.code, taken.value.field) == ("USER_ALREADY_EXISTS", "email")
    assert User.objects.filter(email__iexact="both@example.test").count() == 1


def test_sign_up_gives_the_member_a_profile_address(client):
    client.post(
        "/accounts/signup/",
        {
            "email": "new@example.test",
            "display_name": "New Member",
            "password1": "a-long-unique-passphrase",
            "password2": "a-long-unique-passphrase",
        },
    )
    member = User.objects.get(email="new@example.test")
    assert member.handle == "new-member"
    page = client.get("/sellers/new-member/").content.decode()
    assert "New Member" in page and "Edit your profile" in page and "No reviews yet" in page


def test_the_seller_profile_shows_about_listings_rating_and_reviews(client):
    seller = UserFactory(display_name="Dana Designs")
    seller.about = "Logos <b>and</b> more."
    seller.save()
    listing = ListingFactory(seller=seller, title="A logo in a day")
    ListingFactory(seller=seller, title="Paused one", status=Listing.Status.PAUSED)
    order = an_order(listing=listing, buyer=UserFactory(display_name="Bea"))
    review = review_create(order=order, buyer=order.buyer, rating=4, body="Clean <i>work</i>")
    review_reply(review=review, seller=seller, reply="Thanks, Bea!")
    an_order(S.CLOSED, listing=listing, outcome=Order.Outcome.RELEASED)
    an_order(S.CLOSED, listing=listing, outcome=Order.Outcome.REFUNDED)  # not a completed sale

    page = client.get(f"/sellers/{seller.handle}/").content.decode()
    assert "Dana Designs" in page and "Logos &lt;b&gt;and&lt;/b&gt; more." in page
    assert "A logo in a day" in page and "Paused one" not in page
    assert "Clean &lt;i&gt;work&lt;/i&gt;" in page and "Thanks, Bea!" in page
    assert "<strong>4.0</strong>" in page and "(1 review)" in page
    assert "2 completed orders" in page
    assert "Edit your profile" not in page
    assert client.get("/sellers/nobody-here/").status_code == 404
    seller.status = User.Status.SUSPENDED
    seller.save()
    assert client.get(f"/sellers/{seller.handle}/").status_code == 404


def test_the_listing_page_shows_the_seller_card_reviews_and_related_listings(client):
    category = CategoryFactory(name="Design", slug="design")
    seller = UserFactory(display_name="Dana")
    listing = ListingFactory(seller=seller, category=category, title="A logo in a day")
    ListingFactory(category=category, title="Another design service")
    ListingFactory(title="Something else entirely")
    for rating in (5, 4):
        order = an_order(listing=listing)
        review_create(order=order, buyer=order.buyer, rating=rating, body=f"Rated {rating}")
    page = client.get(f"/listings/{listing.public_id}/").content.decode()
    assert 'data-testid="seller-card"' in page and f'href="/sellers/{seller.handle}/"' in page
    assert "2 completed orders" in page and "Member since" in page
    assert "<strong>4.5</strong>" in page and "(2 reviews)" in page
    assert "Rated 5" in page and "Rated 4" in page
    assert "More in Design" in page and "Another design service" in page and "Something else entirely" not in page
    # The grid's card carries the listing's rating too.
    browse = client.get("/listings/").content.decode()
    card = browse[browse.rindex("<article", 0, browse.index("A logo in a day")) :]
    assert "<strong>4.5</strong>" in card[: card.index("</article>")]


def test_a_card_shows_a_new_review_on_the_next_load():
    listing = ListingFactory(title="Reviewed soon")
    assert 'data-testid="card-rating"' not in listing_cards(listings_browse())[0]
    order = an_order(listing=listing)
    review_create(order=order, buyer=order.buyer, rating=3, body="Fine")
    assert "<strong>3.0</strong>" in listing_cards(listings_browse())[0]


def test_members_edit_their_about_and_picture(settings):
    member = UserFactory()
    client = logged_in(member)
    assert Client().get("/accounts/profile/").status_code == 302  # logged in only
    response = client.post("/accounts/profile/", {"about": "I draw logos.", "avatar": png()}, follow=True)
    assert "Your profile is saved." in response.content.decode()
    member.refresh_from_db()
    assert member.about == "I draw logos."
    with member.avatar.open() as stored, Image.open(stored) as picture:
        assert picture.size == (256, 256)  # cropped to a square
    old = member.avatar.name

    bad = SimpleUploadedFile("me.png", b"not an image", content_type="image/png")
    page = client.post("/accounts/profile/", {"about": "x" * 601, "avatar": bad}).content.decode()
    assert "Ensure this value has at most 600 characters" in page
    member.refresh_from_db()
    assert member.avatar.name == old and member.about == "I draw logos."

    client.post("/accounts/profile/", {"about": "", "avatar_remove": "on"})
    member.refresh_from_db()
    assert not member.avatar and member.about == ""
    assert AuditLog.objects.filter(action="user.profile_updated", actor_id=member.public_id).count() == 2
    with pytest.raises(ServiceError) as refused:
        user_profile_update(user=member, about="", avatar=bad)
    assert refused.value.field == "avatar"


def test_a_refused_picture_shows_its_error_by_the_field(settings):
    client = logged_in(UserFactory())
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(out, format="GIF")
    gif = SimpleUploadedFile("me.gif", out.getvalue(), content_type="image/gif")
    page = client.post("/accounts/profile/", {"about": "Logos", "avatar": gif}).content.decode()
    field = page.index('id="id_avatar"')
    tag = page[page.rindex("<input", 0, field) : page.index(">", field)]
    assert "is-invalid" in tag and 'aria-invalid="true"' in tag and "id_avatar-errors" in tag
    error = page.index('<div class="invalid-feedback d-block" id="id_avatar-errors">')
    assert 0 < error - field < 600 and "“me.gif” is a GIF image; use JPEG, PNG or WebP." in page[error : error + 200]
    assert "Logos</textarea>" in page  # what was typed is kept

    # The size is checked before anything decodes the upload: a large file is refused for its size.
    settings.OFFERHUB_LISTING_IMAGE_MAX_BYTES = 1_024
    big = SimpleUploadedFile("big.png", b"\x89PNG" + b"x" * 2_000, content_type="image/png")
    page = client.post("/accounts/profile/", {"about": "", "avatar": big}).content.decode()
    field = page.index('id="id_avatar"')
    assert "is-invalid" in page[field : page.index(">", field)]
    assert "“big.png” is larger than 1 KB." in page
    assert "not a JPEG, PNG or WebP image" not in page and "Upload a valid image" not in page


# --- The order page's review box -------------------------------------------------------------------------


def test_the_buyer_reviews_from_the_order_page_and_the_seller_replies():
    order = an_order(S.CLOSED, outcome=Order.Outcome.RELEASED)
    buyer, seller = logged_in(order.buyer), logged_in(order.seller)
    page = buyer.get(f"/orders/{order.public_id}/").content.decode()
    assert "How did it go?" in page and 'name="rating"' in page
    assert "How did it go?" not in seller.get(f"/orders/{order.public_id}/").content.decode()

    # A refused form comes back with what was typed.
    page = buyer.post(reverse("order-review", args=[order.public_id]), {"body": "Lovely"}).content.decode()
    assert "This field is required." in page and ">Lovely</textarea>" in page
    response = buyer.post(
        reverse("order-review", args=[order.public_id]), {"rating": "5", "body": "Lovely"}, follow=True
    )
    assert "Thank you: your review is published." in response.content.decode()
    assert "Your review" in response.content.decode()
    again = buyer.post(reverse("order-review", args=[order.public_id]), {"rating": "1", "body": "x"}, follow=True)
    assert "You have already reviewed this order." in again.content.decode()
    assert Review.objects.get().rating == 5

    page = seller.get(f"/orders/{order.public_id}/").content.decode()
    assert "The buyer's review" in page and "Reply to this review" in page
    assert buyer.post(reverse("order-review-reply", args=[order.public_id]), {"reply": "Me?"}).status_code == 302
    assert not Review.objects.get().reply  # the buyer's try was refused (a message says so)
    seller.post(reverse("order-review-reply", args=[order.public_id]), {"reply": "Thank you!"})
    assert Review.objects.get().reply == "Thank you!"
    assert "Reply to this review" not in seller.get(f"/orders/{order.public_id}/").content.decode()


def test_review_forms_need_the_order_csrf_and_a_participant():
    order = an_order()
    stranger = logged_in(UserFactory())
    assert (
        stranger.post(reverse("order-review", args=[order.public_id]), {"rating": "5", "body": "x"}).status_code == 404
    )
    assert Client().post(reverse("order-review", args=[order.public_id])).status_code == 302  # to the login
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(order.buyer)
    assert (
        csrf_client.post(reverse("order-review", args=[order.public_id]), {"rating": "5", "body": "x"}).status_code
        == 403
    )
    assert logged_in(order.buyer).get(reverse("order-review", args=[order.public_id])).status_code == 405
    assert not Review.objects.exists()


def test_an_order_in_progress_offers_no_review():
    order = an_order(S.IN_PROGRESS)
    page = logged_in(order.buyer).get(f"/orders/{order.public_id}/").content.decode()
    assert 'data-testid="order-review"' not in page
    assert (
        logged_in(order.buyer)
        .post(reverse("order-review", args=[order.public_id]), {"rating": "5", "body": "Early"}, follow=True)
        .content.decode()
        .count("once the seller has been paid")
        == 1
    )


# --- The admin --------------------------------------------------------------------------------------------


def test_a_support_agent_hides_a_review_from_the_backoffice():
    order = an_order()
    review = review_create(order=order, buyer=order.buyer, rating=1, body="Call me on +1 555 0100")
    agent = UserFactory(is_staff=True)
    agent.groups.add(Group.objects.get(name=SUPPORT_AGENT))
    client = logged_in(agent)
    change = client.get(reverse("admin:marketplace_review_change", args=[review.pk])).content.decode()
    assert "Hide this review" in change
    hide = reverse("admin:marketplace_review_hide", args=[review.pk])
    assert "reason" in client.get(hide).content.decode()
    assert "This field is required" in client.post(hide, {"reason": ""}).content.decode()
    response = client.post(hide, {"reason": "A phone number"}, follow=True)
    assert "The review is hidden from the marketplace." in response.content.decode()
    review.refresh_from_db()
    assert review.hidden and review.hidden_reason == "A phone number"
    assert AuditLog.objects.get(action="review.hidden").actor_id == agent.public_id
    reader = UserFactory(is_staff=True)  # staff without the role's permission
    assert logged_in(reader).post(hide, {"reason": "x"}).status_code == 403


# --- Query counts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 12])
def test_the_pages_read_the_same_whatever_the_reviews_and_listings(count, django_assert_max_num_queries, tmp_path):
    seller = UserFactory()
    category = CategoryFactory(name="Design", slug="design")
    listings = [ListingFactory(seller=seller, category=category) for _ in range(count)]
    for listing in listings:
        ListingImage.objects.create(listing=listing, image=f"listings/{listing.public_id}/a.png", width=4, height=3)
        order = an_order(listing=listing)
        review = review_create(order=order, buyer=order.buyer, rating=4, body="Good")
        review_reply(review=review, seller=seller, reply="Thanks")
    client = logged_in(UserFactory())
    # The session with its member, the seller with their stats, the listings (covers and ratings as
    # columns), the reviews.
    with django_assert_max_num_queries(4):
        page = client.get(f"/sellers/{seller.handle}/").content.decode()
    assert page.count('data-testid="review"') == count
    # The session with its member, the listing (ratings as columns), images, milestones, reviews,
    # related listings.
    with django_assert_max_num_queries(6):
        page = client.get(f"/listings/{listings[0].public_id}/").content.decode()
    assert 'data-testid="seller-card"' in page
    # The session (with its member and the catalogue's version), latest listings, categories; then
    # the cached page.
    with django_assert_max_num_queries(3):
        assert client.get("/").status_code == 200
    with django_assert_max_num_queries(1):
        assert client.get("/").status_code == 200
    with django_assert_max_num_queries(2):  # the session with its member, the member with their stats
        assert client.get("/accounts/profile/").status_code == 200


def test_the_order_page_reads_its_review_in_one_query(django_assert_max_num_queries):
    order = an_order(S.CLOSED, outcome=Order.Outcome.RELEASED)
    review = review_create(order=order, buyer=order.buyer, rating=4, body="Good")
    review_reply(review=review, seller=order.seller, reply="Thanks")
    for member in (order.buyer, order.seller):
        client = logged_in(member)
        # The order page's own reads and one for the review with its buyer: 7, as many as with no review yet.
        with django_assert_max_num_queries(7):
            page = client.get(f"/orders/{order.public_id}/").content.decode()
        assert 'data-testid="review-reply"' in page
