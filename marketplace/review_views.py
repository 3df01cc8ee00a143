"""Seller profiles, the member's own profile page, and the review and reply forms of the order page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from marketplace import order_views
from marketplace.listings import listing_cards, listings_browse
from marketplace.models import Order, User
from marketplace.review_forms import ProfileForm, ReplyForm, ReviewForm
from marketplace.reviews import (
    review_create,
    review_of_order,
    review_reply,
    reviews_of_seller,
    seller_by_handle,
    seller_rating,
    sellers_with_stats,
    user_profile_update,
)
from offerhub.errors import ServiceError

PROFILE_LISTINGS = 24


def seller_profile(request, handle):
    seller = seller_by_handle(handle=handle)
    if seller is None:
        raise Http404("No such seller")
    listings = listings_browse().filter(seller=seller)[:PROFILE_LISTINGS]
    return render(
        request,
        "marketplace/seller_profile.html",
        {
            "seller": seller,
            "rating": seller_rating(seller),
            "cards": listing_cards(listings),
            "reviews": reviews_of_seller(seller=seller),
            "is_me": request.user.is_authenticated and request.user.pk == seller.pk,
        },
    )


@login_required
def account_profile(request):
    """The member's own about text and picture (what their seller profile shows)."""
    user = request.user
    form = ProfileForm(request.POST or None, request.FILES or None, initial={"about": user.about})
    if request.method == "POST" and form.is_valid():
        try:
            user_profile_update(
                user=user,
                about=form.cleaned_data["about"],
                avatar=form.cleaned_data["avatar"] or None,
                avatar_remove=form.cleaned_data["avatar_remove"],
            )
        except ServiceError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, "Your profile is saved.")
            return redirect("account-profile")
    me = sellers_with_stats(User.objects.filter(pk=user.pk)).get()
    return render(request, "marketplace/account_profile.html", {"form": form, "me": me, "rating": seller_rating(me)})


def _own_order(request, public_id) -> Order:
    order = Order.objects.select_related("buyer", "seller").filter(public_id=public_id).first()
    if order is None or not order.is_participant(request.user):
        raise Http404("No such order")
    return order


def _order_form_submit(request, order: Order, *, form, name: str, act, done: str):
    """A form of the order page: `act(cleaned_data)` when valid, then back to the order with
    `done`; a refusal about one of the form's fields shows by that field on the page again
    (as typed), any other as a message on the order page."""
    if form.is_valid():
        try:
            act(form.cleaned_data)
        except ServiceError as error:
            if error.field not in form.fields:
                messages.error(request, error.message)
                return redirect("order-detail", public_id=order.public_id)
            form.add_error(error.field, error.message)
        else:
            messages.success(request, done)
            return redirect("order-detail", public_id=order.public_id)
    return _order_page_again(request, order.public_id, **{name: form})


def _order_page_again(request, public_id, **forms):
    """The order page with the refused form as it was filled in (the partial reads request.review_forms)."""
    request.review_forms = forms
    return order_views.order_detail(request, public_id)


@login_required
@require_POST
def review_create_view(request, public_id):
    order = _own_order(request, public_id)
    return _order_form_submit(
        request,
        order,
        form=ReviewForm(request.POST),
        name="review",
        act=lambda data: review_create(order=order, buyer=request.user, rating=data["rating"], body=data["body"]),
        done="Thank you: your review is published.",
    )


@login_required
@require_POST
def review_reply_view(request, public_id):
    order = _own_order(request, public_id)
    review = review_of_order(order)
    if review is None:
        raise Http404("No review to reply to")
    return _order_form_submit(
        request,
        order,
        form=ReplyForm(request.POST),
        name="reply",
        act=lambda data: review_reply(review=review, seller=request.user, reply=data["reply"]),
        done="Your reply is published under the review.",
    )
