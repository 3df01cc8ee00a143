import re

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import Count, Window
from django.http import Http404, HttpResponseServerError
from django.shortcuts import redirect, render
from django.template import loader
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import requires_csrf_token
from django.views.decorators.http import require_POST

from marketplace.catalog_pages import catalog_page
from marketplace.forms import AirtmLinkForm, BrowseForm, ListingForm, MilestoneFormSet, SignUpForm
from marketplace.listings import (
    categories_all,
    listing_cards,
    listing_create,
    listing_delete,
    listing_for_buyers,
    listing_owned,
    listing_pause,
    listing_resume,
    listing_update,
    listings_browse,
    listings_of_seller,
    sort_effective,
)
from marketplace.reviews import (
    listing_page_annotations,
    listing_rating,
    listing_seller,
    reviews_of_listing,
    seller_rating,
)
from marketplace.services import user_airtm_link, user_sign_up
from offerhub.errors import ServiceError
from payments.balances import Actor
from payments.providers import rail_enabled

LISTINGS_PER_PAGE = 12
_PAGE_NUMBER = re.compile(r"[0-9]{1,9}")
HOME_LISTINGS = 8
RELATED_LISTINGS = 4


def home(request):
    return catalog_page(
        request,
        "marketplace/home.html",
        lambda: {"latest": listing_cards(listings_browse()[:HOME_LISTINGS]), "categories": categories_all()},
    )


# --- Listings: buyers --------------------------------------------------------------


def _browse_page(listings, raw_number) -> Page:
    """Paginator.get_page without its COUNT query: the page's rows carry the total (a window
    count in the same query). A page past the end, or a number that is not a plain positive
    integer, goes to get_page itself, with its answers (the last page, the first page)."""
    paginator = Paginator(listings, LISTINGS_PER_PAGE)
    number = 1 if raw_number in (None, "") else int(raw_number) if _PAGE_NUMBER.fullmatch(raw_number) else 0
    if number >= 1:
        bottom = (number - 1) * LISTINGS_PER_PAGE
        rows = list(listings.annotate(browse_total=Window(Count("*")))[bottom : bottom + LISTINGS_PER_PAGE])
        if rows:
            paginator.count = rows[0].browse_total  # the cached_property's value, from the same query
            return Page(rows, number, paginator)
    return paginator.get_page(raw_number)


def listing_browse(request):
    return catalog_page(request, "marketplace/listing_browse.html", lambda: _browse_context(request))


def _browse_context(request) -> dict:
    form = BrowseForm(request.GET)
    form.is_valid()  # invalid values are left out of cleaned_data, and so not applied
    query = form.cleaned_data.get("q", "")
    category = form.cleaned_data.get("category")
    sort = sort_effective(sort=form.cleaned_data.get("sort", ""), query=query)
    page = _browse_page(listings_browse(query=query, category=category, sort=sort), request.GET.get("page"))
    return {
        "form": form,
        "page": page,
        "cards": listing_cards(page.object_list),
        "query": query,
        "category": category,
        "sort": sort,
        "categories": categories_all(),
        "filtered": bool(query or category),
    }


def listing_detail(request, public_id):
    viewer = request.user if request.user.is_authenticated else None
    listing = listing_for_buyers(public_id=public_id, viewer=viewer, annotations=listing_page_annotations())
    if listing is None:
        raise Http404("No such listing")
    seller = listing_seller(listing)
    related = listings_browse(category=listing.category).exclude(pk=listing.pk)[:RELATED_LISTINGS]
    return render(
        request,
        "marketplace/listing_detail.html",
        {
            "listing": listing,
            "is_owner": viewer is not None and listing.seller_id == viewer.pk,
            "seller": seller,
            "seller_rating": seller_rating(seller),
            "rating": listing_rating(listing),
            "reviews": reviews_of_listing(listing=listing),
            "related": listing_cards(related),
        },
    )


# --- Listings: sellers -------------------------------------------------------------


def _owned_or_404(request, public_id):
    """Someone else's listing answers exactly as a listing that does not exist."""
    listing = listing_owned(seller=request.user, public_id=public_id)
    if listing is None:
        raise Http404("No such listing")
    return listing


def _listing_forms(request, listing=None):
    """The listing form and its milestones formset, the formset checking its sum against the form's price."""
    data = request.POST if request.method == "POST" else None
    form = ListingForm(data, request.FILES if data is not None else None, listing=listing)
    price = None
    if data is not None:
        form.is_valid()  # the price is usable even when another field of the form failed
        price = form.cleaned_data.get("price")
    initial = [{"title": m.title, "amount": m.amount} for m in listing.milestones.all()] if listing else None
    milestones = MilestoneFormSet(data, prefix="milestones", initial=initial, price=price)
    return form, milestones


def _listing_fields(form, milestones) -> dict:
    data = form.cleaned_data
    return {
        "title": data["title"],
        "description": data["description"],
        "price": data["price"],
        "category": data["category"],
        "delivery_days": data["delivery_days"],
        "delivery_terms": data["delivery_terms"],
        "milestones": milestones.milestones(),
    }


def _refused(form, error: ServiceError) -> None:
    form.add_error(error.field if error.field in form.fields else None, error.message)


@login_required
def listing_new(request):
    form, milestones = _listing_forms(request)
    if request.method == "POST" and form.is_valid() and milestones.is_valid():
        try:
            listing = listing_create(
                seller=request.user, images=form.cleaned_data["images"], **_listing_fields(form, milestones)
            )
        except ServiceError as error:
            _refused(form, error)
        else:
            messages.success(request, "Your listing is live. Buyers can find it now.")
            return redirect("listing-detail", public_id=listing.public_id)
    return render(request, "marketplace/listing_form.html", {"form": form, "milestones": milestones})


@login_required
def listing_edit(request, public_id):
    listing = _owned_or_404(request, public_id)
    form, milestones = _listing_forms(request, listing)
    if request.method == "POST" and form.is_valid() and milestones.is_valid():
        try:
            listing_update(
                listing=listing,
                actor=request.user,
                images_added=form.cleaned_data["images"],
                images_removed=list(form.cleaned_data["remove_images"]),
                **_listing_fields(form, milestones),
            )
        except ServiceError as error:
            _refused(form, error)
        else:
            messages.success(request, "Your changes are saved.")
            return redirect("listing-detail", public_id=listing.public_id)
    return render(
        request, "marketplace/listing_form.html", {"form": form, "milestones": milestones, "listing": listing}
    )


def _back(request, default: str):
    """Where the seller pressed the button (a page of ours), or `default`."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


@login_required
@require_POST
def listing_pause_view(request, public_id):
    try:
        listing = listing_pause(listing=_owned_or_404(request, public_id), actor=request.user)
    except ServiceError as error:  # e.g. deleted in another tab meanwhile
        messages.error(request, error.message)
    else:
        messages.success(request, f"“{listing.title}” is paused: buyers no longer see it. Resume it any time.")
    return _back(request, "my-listings")


@login_required
@require_POST
def listing_resume_view(request, public_id):
    try:
        listing = listing_resume(listing=_owned_or_404(request, public_id), actor=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"“{listing.title}” is live again.")
    return _back(request, "my-listings")


@login_required
def listing_delete_view(request, public_id):
    """A GET asks to confirm; the POST deletes."""
    listing = _owned_or_404(request, public_id)
    if request.method == "POST":
        try:
            listing_delete(listing=listing, actor=request.user)
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"“{listing.title}” is deleted.")
        return redirect("my-listings")
    return render(request, "marketplace/listing_delete.html", {"listing": listing})


@login_required
def my_listings(request):
    page = Paginator(listings_of_seller(seller=request.user), 20).get_page(request.GET.get("page"))
    return render(request, "marketplace/listing_mine.html", {"page": page})


@login_required
def airtm_link(request):
    """Link the member's Airtm account (checked at Airtm), then back to the wallet."""
    if not rail_enabled("airtm"):  # OFFERHUB_PAYMENTS_PROVIDER=crypto: no Airtm here
        raise Http404("Airtm is not offered here")
    form = AirtmLinkForm(request.POST or None, initial={"email": request.user.airtm_email or request.user.email})
    if request.method == "POST" and form.is_valid():
        try:
            user = user_airtm_link(
                user=request.user, email=form.cleaned_data["email"], actor=Actor("USER", request.user.public_id)
            )
        except ServiceError as error:
            if error.code.startswith("PROVIDER_"):  # Airtm down or slow: nothing was linked
                form.add_error(None, "We could not reach Airtm just now. Nothing was changed; please try again.")
            else:
                _refused(form, error)
        else:
            messages.success(request, f"Your Airtm account {user.airtm_email} is linked.")
            return redirect("wallet")
    return render(request, "marketplace/airtm_link.html", {"form": form})


def sign_up(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_sign_up(
                email=form.cleaned_data["email"],
                display_name=form.cleaned_data["display_name"],
                password=form.cleaned_data["password1"],
            )
        except ServiceError as error:  # the same e-mail signed up a moment ago
            _refused(form, error)
        else:
            login(request, user, backend="marketplace.auth_backends.PreparedModelBackend")
            messages.success(request, f"Welcome to OfferHub, {user.display_name}!")
            return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


def log_out(request):
    """POST logs out (CSRF-protected); a GET, e.g. a typed URL, asks to confirm."""
    if request.method == "POST":
        return auth_views.LogoutView.as_view()(request)
    return render(request, "registration/logout_confirm.html")


def page_not_found(request, exception=None):
    return render(request, "404.html", status=404)


@requires_csrf_token
def server_error(request):
    # Rendered without context processors: the failure may be in one of them.
    return HttpResponseServerError(loader.get_template("500.html").render())
