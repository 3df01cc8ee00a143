"""Web sign-up, log-in, log-out and password reset, as a member uses them."""

import re

import pytest
from django.contrib.admin.utils import quote
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from marketplace.models import User
from offerhub.models import AuditLog, Event
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

SIGNUP = {
    "email": "New.Member@Example.test",
    "display_name": "New Member",
    "password1": "a-long-unique-passphrase",
    "password2": "a-long-unique-passphrase",
}


def test_home_page_for_visitors_and_members(client, user):
    page = client.get("/").content.decode()
    assert "Pay for work only when it" in page
    assert 'href="/accounts/signup/"' in page
    assert "/static/vendor/bootstrap/bootstrap.min.css" in page
    client.force_login(user)
    page = client.get("/").content.decode()
    assert user.display_name in page
    assert "Log out" in page


def test_sign_up_creates_the_member_logs_them_in_and_records_it(client):
    response = client.post("/accounts/signup/", SIGNUP, follow=True)
    assert response.status_code == 200
    user = User.objects.get()
    assert user.email == "new.member@example.test"
    assert user.public_id.startswith("usr_") and len(user.public_id) == 36
    assert response.context["user"] == user
    assert "Welcome to OfferHub, New Member!" in response.content.decode()
    audit = AuditLog.objects.get(action="user.signed_up")
    assert audit.resource_id == user.public_id and audit.payload_after["email"] == "[REDACTED]"
    event = Event.objects.get(type="user.created")
    assert event.payload["userId"] == user.public_id


def test_sign_up_errors_name_the_field_and_keep_input(client, user):
    response = client.post("/accounts/signup/", {**SIGNUP, "email": user.email.upper(), "password2": "other"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "An account with this e-mail address already exists" in page
    assert "The two password fields didn" in page
    assert 'aria-invalid="true"' in page
    assert 'value="New Member"' in page
    assert User.objects.count() == 1


def test_password_strength_errors_show_under_the_password(client):
    form = client.post("/accounts/signup/", {**SIGNUP, "password1": "short", "password2": "short"}).context["form"]
    assert "This password is too short." in " ".join(form.errors["password1"])
    assert "password2" not in form.errors


def test_sign_up_requires_an_email(client):
    response = client.post("/accounts/signup/", {**SIGNUP, "email": ""})
    assert "This field is required." in response.content.decode()
    assert not User.objects.exists()


def test_forms_are_csrf_protected():
    csrf_client = Client(enforce_csrf_checks=True)
    assert csrf_client.post("/accounts/signup/", SIGNUP).status_code == 403
    assert not User.objects.exists()


def test_log_in_with_email_case_insensitively_and_log_out(client, user):
    response = client.post("/accounts/login/", {"username": user.email.upper(), "password": TEST_PASSWORD})
    assert response.status_code == 302
    assert client.get("/").wsgi_request.user == user
    assert "Log out?" in client.get("/accounts/logout/").content.decode()  # a GET only asks
    assert client.get("/").wsgi_request.user == user
    client.post("/accounts/logout/")
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_wrong_password_gets_a_clear_error(client, user):
    response = client.post("/accounts/login/", {"username": user.email, "password": "nope"})
    assert response.status_code == 200
    assert "The e-mail address or the password is not right." in response.content.decode()


def test_password_reset_by_email(client):
    member = UserFactory(email="reset@example.test")
    response = client.post("/accounts/password-reset/", {"email": "reset@example.test"}, follow=True)
    assert "Check your e-mail" in response.content.decode()
    (message,) = mail.outbox
    assert message.to == ["reset@example.test"]
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "brand-new-passphrase-9", "new_password2": "brand-new-passphrase-9"},
        follow=True,
    )
    assert "Your password is changed" in done.content.decode()
    member.refresh_from_db()
    assert member.check_password("brand-new-passphrase-9")


def test_designed_404_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "We couldn't find that page" in response.content.decode()


def test_admin_is_the_offerhub_backoffice(client):
    support = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(support)
    page = client.get("/admin/").content.decode()
    assert "OfferHub backoffice" in page
    assert "API keys" in page and "Audit logs" in page


def test_admin_creates_an_api_key_and_shows_it_once(client):
    support = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(support)
    response = client.post(
        "/admin/offerhub/apikey/add/", {"name": "from admin", "scopes": ["read", "write"]}, follow=True
    )
    page = response.content.decode()
    secret = re.search(r"<code>(ohk_test_key_\w+)</code>", page).group(1)
    api = Client()
    me = api.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {secret}").json()["data"]
    assert me["apiKeyName"] == "from admin" and me["scopes"] == ["read", "write"]
    page = client.get(reverse("admin:offerhub_apikey_change", args=[quote(me["apiKeyId"])]))
    assert page.status_code == 200 and secret not in page.content.decode()


def test_seed_demo_is_idempotent_and_prints_the_logins(capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    output = capsys.readouterr().out
    assert "buyer@demo.offerhub.test" in output and "offerhub-demo" in output
    assert User.objects.filter(email__endswith="@demo.offerhub.test").count() == 6  # a buyer, 3 sellers, 2 support
    assert User.objects.get(email="support@demo.offerhub.test").is_staff
    assert User.objects.get(email="buyer@demo.offerhub.test").check_password("offerhub-demo")
