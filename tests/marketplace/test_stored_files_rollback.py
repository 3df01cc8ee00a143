"""Files stored by a transaction that then fails at its end leave nothing behind: a delivery whose
deferred order write or COMMIT the database refuses, dispute evidence whose COMMIT fails, listing
images and an avatar whose caller's transaction rolls back. The failures are the database's own
(a CHECK constraint, a deferred constraint trigger), made in the test; the code is not patched."""

import contextlib
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, IntegrityError, connection, transaction

from disputes.models import Dispute, DisputeEvidence, Party
from disputes.services import dispute_evidence_add
from marketplace.listings import listing_create
from marketplace.models import Listing, Order, OrderMilestone
from marketplace.orders import OrderActor
from marketplace.reviews import user_profile_update
from offerhub.models import AuditLog
from tests.factories import CategoryFactory, UserFactory
from tests.marketplace.test_dispute_case_api import disputed
from tests.marketplace.test_listings import image_upload
from tests.marketplace.test_order_pages import milestone_order_bought, order_bought

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def files_under(root: str) -> list[Path]:
    return [path for path in Path(root).rglob("*") if path.is_file()]


def private(name: str) -> Path:
    return Path(django_settings.PRIVATE_MEDIA_ROOT, name)


def pdf(name="work.pdf") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"%PDF-1.4\n% the work\n", content_type="application/pdf")


@contextlib.contextmanager
def ddl(create: list[str], drop: list[str]):
    """Schema changes for one transactional test, undone after it (a flush empties rows only)."""
    with connection.cursor() as cursor:
        for statement in create:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in drop:
                cursor.execute(statement)


def refused_at_commit(table: str, condition: str):
    """A deferred constraint trigger: a row of `table` written with `condition` true makes COMMIT fail."""
    return ddl(
        [
            "CREATE FUNCTION test_refused_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN IF {condition} THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$",
            f"CREATE CONSTRAINT TRIGGER test_refused_at_commit AFTER INSERT OR UPDATE ON {table}"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refused_at_commit()",
        ],
        [f"DROP TRIGGER test_refused_at_commit ON {table}", "DROP FUNCTION test_refused_at_commit()"],
    )


# --- Deliveries -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_deferred_order_write_fails_leaves_no_file_and_can_be_retried(
    chain, funded_user, trustless_work
):
    buyer, seller = funded_user("50.00"), funded_user("0")
    buyer_client, seller_client, base = order_bought(buyer, seller)
    order = Order.objects.get()
    before = (order.status, order.delivered_at, order.updated_at)

    # The order's row is written last, when the delivery's block ends (outbox_save): after the
    # service's own code. The database refuses that write.
    with ddl(
        ["ALTER TABLE marketplace_order ADD CONSTRAINT test_not_delivered CHECK (delivered_at IS NULL) NOT VALID"],
        ["ALTER TABLE marketplace_order DROP CONSTRAINT test_not_delivered"],
    ):
        with pytest.raises(IntegrityError, match="test_not_delivered"):
            seller_client.post(base + "deliver/", {"evidence_text": "The logo", "evidence_file": pdf("logo.pdf")})
        assert files_under(django_settings.PRIVATE_MEDIA_ROOT) == []
        order.refresh_from_db()
        assert (order.status, order.delivered_at, order.updated_at) == before
        assert not AuditLog.objects.filter(action="order.delivered", resource_id=order.public_id).exists()

    response = seller_client.post(base + "deliver/", {"evidence_text": "The logo", "evidence_file": pdf("logo.pdf")})
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.delivered_at is not None
    (kept,) = files_under(django_settings.PRIVATE_MEDIA_ROOT)  # the retry's file, committed: it stays
    record = AuditLog.objects.get(action="order.delivered", resource_id=order.public_id)
    assert private(record.payload_after["evidenceFile"]) == kept
    download = buyer_client.get(f"{base}delivery/file/")
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF")


@pytest.mark.django_db(transaction=True)
def test_a_milestone_delivery_refused_at_commit_leaves_no_file_and_can_be_retried(chain, funded_user, trustless_work):
    buyer, seller = funded_user("50.00"), funded_user("0")
    buyer_client, seller_client, base = milestone_order_bought(buyer, seller)
    order = Order.objects.get()
    form = {"milestone": "m1", "evidence_text": "The draft"}

    with refused_at_commit("marketplace_ordermilestone", "NEW.evidence_file <> ''"):
        with pytest.raises(DatabaseError, match="refused at commit"):
            seller_client.post(base + "deliver/", {**form, "evidence_file": pdf("draft.pdf")})
        assert files_under(django_settings.PRIVATE_MEDIA_ROOT) == []
        draft = OrderMilestone.objects.get(order=order, ref="m1")
        assert (draft.status, draft.evidence_file.name, draft.evidence_text) == (OrderMilestone.Status.OPEN, "", "")

    assert seller_client.post(base + "deliver/", {**form, "evidence_file": pdf("draft.pdf")}).status_code == 302
    draft = OrderMilestone.objects.get(order=order, ref="m1")
    assert draft.status == OrderMilestone.Status.COMPLETED
    assert files_under(django_settings.PRIVATE_MEDIA_ROOT) == [
        Path(django_settings.PRIVATE_MEDIA_ROOT, draft.evidence_file.name)
    ]
    # Kept once committed: the next delivery (the last, writing the order too) leaves it be.
    assert seller_client.post(base + "deliver/", {"milestone": "m2", "evidence_text": "Final"}).status_code == 302
    assert Order.objects.get().delivered_at is not None
    download = buyer_client.get(f"/orders/{order.public_id}/milestones/m1/evidence/")
    assert download.status_code == 200 and b"".join(download.streaming_content).startswith(b"%PDF")


# --- Dispute evidence ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_dispute_evidence_refused_at_commit_leaves_no_file(chain, funded_user, trustless_work, writer):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    dispute = Dispute.objects.select_related("order__buyer", "order__seller").get(public_id=dispute["id"])
    add = {"dispute": dispute, "party": Party.SELLER, "actor": OrderActor.for_user(seller), "text": "proof"}

    with refused_at_commit("disputes_disputeevidence", "NEW.file <> ''"):
        with pytest.raises(DatabaseError, match="refused at commit"):
            dispute_evidence_add(**add, file=SimpleUploadedFile("proof.png", PNG, content_type="image/png"))
        assert files_under(django_settings.PRIVATE_MEDIA_ROOT) == []
        assert not DisputeEvidence.objects.filter(kind=DisputeEvidence.Kind.FILE).exists()

    evidence = dispute_evidence_add(**add, file=SimpleUploadedFile("proof.png", PNG, content_type="image/png"))
    assert files_under(django_settings.PRIVATE_MEDIA_ROOT) == [
        Path(django_settings.PRIVATE_MEDIA_ROOT, evidence.file.name)
    ]


# --- Public images: listings and avatars ------------------------------------------------------------------


@pytest.mark.django_db
def test_listing_images_of_a_transaction_rolled_back_are_deleted():
    seller, category = UserFactory(), CategoryFactory()
    listing = {
        "seller": seller,
        "title": "A logo",
        "description": "A logo for your shop, three concepts.",
        "price": Decimal("120.00"),
        "category": category,
        "delivery_days": 5,
    }
    with pytest.raises(RuntimeError), transaction.atomic():  # the caller's transaction fails after the listing
        listing_create(**listing, images=[image_upload("a.png"), image_upload("b.png")])
        assert len(files_under(django_settings.MEDIA_ROOT)) == 2
        raise RuntimeError("after the listing")
    assert files_under(django_settings.MEDIA_ROOT) == []
    assert not Listing.objects.exists()

    created = listing_create(**listing, images=[image_upload("a.png")])
    (image,) = created.images.all()
    assert files_under(django_settings.MEDIA_ROOT) == [Path(django_settings.MEDIA_ROOT, image.image.name)]


@pytest.mark.django_db
def test_an_avatar_of_a_transaction_rolled_back_is_deleted():
    member = UserFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        user_profile_update(user=member, about="I draw logos.", avatar=image_upload("me.png"))
        assert len(files_under(django_settings.MEDIA_ROOT)) == 1
        raise RuntimeError("after the profile")
    assert files_under(django_settings.MEDIA_ROOT) == []
    member.refresh_from_db()
    assert not member.avatar
