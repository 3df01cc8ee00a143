"""Issue 14's rough edges on the order pages: short references, confirmations before what cannot
be undone, delivery forms that keep what was typed, the way back from adding funds."""

import re

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from marketplace.models import Order
from marketplace.notifications import order_emails
from marketplace.references import order_pk_from_reference, order_reference
from tests.factories import UserFactory
from tests.marketplace.test_order_pages import an_order, logged_in

S = Order.Status


@pytest.mark.django_db
def test_a_rejected_file_keeps_the_typed_evidence_and_shows_the_error_by_the_field():
    order = an_order(S.IN_PROGRESS)
    exe = SimpleUploadedFile("work.exe", b"MZ\x90\x00", content_type="application/octet-stream")
    response = logged_in(order.seller).post(
        f"/orders/{order.public_id}/deliver/",
        {"evidence_text": "Three concepts, as promised.", "evidence_file": exe},
    )
    page = response.content.decode()
    open("/tmp/polish/reject.html", "w").write(page)
    assert response.status_code == 200
