"""Every backoffice page support can open loads, and the ones holding secrets never show them."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def support_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: f"{m._meta.app_label}.{m._meta.model_name}")
def test_every_changelist_and_add_page_loads(support_client, model):
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert support_client.get(changelist).status_code == 200
    add = support_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    assert add.status_code == (200 if admin.site._registry[model].has_add_permission(add.wsgi_request) else 403)


def test_wallet_admin_never_shows_the_secret(support_client):
    from payments.crypto import secret_encrypt
    from payments.models import Wallet

    user = UserFactory()
    ciphertext, version = secret_encrypt("SBSECRETSECRETSECRET")
    wallet = Wallet.objects.create(
        user=user, public_key="G" + "A" * 55, encrypted_secret=ciphertext, key_version=version
    )
    page = support_client.get(reverse("admin:payments_wallet_change", args=[wallet.pk])).content.decode()
    assert wallet.public_key in page
    assert ciphertext not in page and "SBSECRET" not in page


def test_support_sees_an_order_with_its_milestones(support_client):
    from marketplace.models import Order

    order = Order.objects.create(buyer=UserFactory(), seller=UserFactory(), amount=125_000_000, title="Translation")
    order.milestones.create(position=0, ref="m1", title="First half", amount=125_000_000)
    page = support_client.get(reverse("admin:marketplace_order_change", args=[order.pk])).content.decode()
    assert "Translation" in page and "First half" in page and "12.50" in page
    listing = support_client.get(reverse("admin:marketplace_order_changelist") + "?q=Translation").content.decode()
    assert order.public_id in listing
