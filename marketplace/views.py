from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpResponseServerError
from django.shortcuts import redirect, render
from django.template import loader
from django.views.decorators.csrf import requires_csrf_token

from marketplace.forms import SignUpForm
from marketplace.services import user_sign_up


def home(request):
    return render(request, "marketplace/home.html")


def sign_up(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_sign_up(
            email=form.cleaned_data["email"],
            display_name=form.cleaned_data["display_name"],
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
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
