"""Private uploads (delivery evidence): their own storage outside MEDIA_ROOT, the migration
that moves existing files there, the serving modes and the guard against a public root."""

import importlib
import io
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import Client

from marketplace.models import OrderMilestone
from tests.marketplace.test_order_pages import an_order

MOVE = importlib.import_module("marketplace.migrations.0006_private_evidence_files")


def put(root: str, name: str, content: bytes) -> Path:
    path = Path(root) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def evidence_on(order, ref: str, name: str) -> OrderMilestone:
    milestone = order.milestones.get(ref=ref)
    OrderMilestone.objects.filter(pk=milestone.pk).update(evidence_file=name)
    return milestone


@pytest.mark.django_db
def test_the_migration_moves_existing_evidence_out_of_the_public_media(settings):
    order = an_order(milestones=2)
    first, second = f"orders/{order.public_id}/aaaa.pdf", f"orders/{order.public_id}/bbbb.txt"
    evidence_on(order, "m1", first)
    evidence_on(order, "m2", second)
    put(settings.MEDIA_ROOT, first, b"%PDF-1.4 first")
    put(settings.MEDIA_ROOT, second, b"second, public")
    put(settings.PRIVATE_MEDIA_ROOT, second, b"another file already there")  # a name taken
    image = put(settings.MEDIA_ROOT, "listings/lst_x/cover.png", b"\x89PNG public on purpose")

    apps = MigrationLoader(connection).project_state(("marketplace", "0006_private_evidence_files")).apps
    MOVE.to_private(apps, None)

    assert not [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file() and "orders" in path.parts]
    assert image.exists()  # listing images stay public
    assert (Path(settings.PRIVATE_MEDIA_ROOT) / first).read_bytes() == b"%PDF-1.4 first"
    assert OrderMilestone.objects.get(order=order, ref="m1").evidence_file.name == first
    renamed = OrderMilestone.objects.get(order=order, ref="m2").evidence_file
    assert renamed.name != second and renamed.name.startswith(f"orders/{order.public_id}/bbbb")
    assert renamed.read() == b"second, public"
    assert (Path(settings.PRIVATE_MEDIA_ROOT) / second).read_bytes() == b"another file already there"

    MOVE.to_private(apps, None)  # again: nothing left to move, nothing changes
    assert OrderMilestone.objects.get(order=order, ref="m2").evidence_file.name == renamed.name

    MOVE.to_public(apps, None)  # rolling back puts them where the old code looks
    assert (Path(settings.MEDIA_ROOT) / first).read_bytes() == b"%PDF-1.4 first"


@pytest.mark.django_db
def test_the_command_moves_files_left_behind(settings):
    order = an_order(milestones=1)
    name = f"orders/{order.public_id}/late.zip"
    evidence_on(order, "m1", name)
    put(settings.MEDIA_ROOT, name, b"PK\x03\x04 restored from an old backup")
    output = io.StringIO()
    call_command("private_files_move", stdout=output)
    assert output.getvalue().startswith("Moved 1 file(s)")
    assert not (Path(settings.MEDIA_ROOT) / name).exists()
    assert (Path(settings.PRIVATE_MEDIA_ROOT) / name).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "header", "value"),
    [
        ("x-accel-redirect", "X-Accel-Redirect", "/_private/orders/{order}/draft%20v1.pdf"),
        ("x-sendfile", "X-Sendfile", "{root}/orders/{order}/draft v1.pdf"),
    ],
)
def test_the_web_server_can_send_the_file_after_the_access_check(settings, mode, header, value):
    settings.PRIVATE_MEDIA_SERVE = mode
    order = an_order(milestones=1)
    name = f"orders/{order.public_id}/draft v1.pdf"
    evidence_on(order, "m1", name)
    put(settings.PRIVATE_MEDIA_ROOT, name, b"%PDF-1.4")
    buyer = Client()
    buyer.force_login(order.buyer)
    response = buyer.get(f"/orders/{order.public_id}/milestones/m1/evidence/")
    assert response.status_code == 200 and response.content == b""
    assert response[header] == value.format(order=order.public_id, root=settings.PRIVATE_MEDIA_ROOT)
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    stranger = Client()
    stranger.force_login(an_order().buyer)
    assert stranger.get(f"/orders/{order.public_id}/milestones/m1/evidence/").status_code == 404


@pytest.mark.django_db
def test_a_missing_file_is_404_and_a_private_root_inside_the_public_one_is_refused(settings):
    order = an_order(milestones=1)
    evidence_on(order, "m1", f"orders/{order.public_id}/gone.pdf")
    seller = Client()
    seller.force_login(order.seller)
    assert seller.get(f"/orders/{order.public_id}/milestones/m1/evidence/").status_code == 404

    assert not [error for error in run_checks() if error.id.startswith("offerhub.E")]
    settings.PRIVATE_MEDIA_ROOT = str(Path(settings.MEDIA_ROOT) / "private")
    assert "offerhub.E001" in {error.id for error in run_checks()}
