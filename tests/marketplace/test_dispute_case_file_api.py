"""[X] The dispute's case file over the API: evidence (files in base64), the thread with support's
internal notes, withdrawal by the opener, reassignment, a per-milestone split, the response
deadline; paid on chain through the sandbox Trustless Work, the ledger equal to the chain after,
including when the provider fails while the resolution is submitted."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from disputes.models import Dispute, DisputeEvidence, DisputeMessage
from disputes.services import RESOLUTION_STEPS
from escrow.models import Escrow, EscrowStep
from escrow.runner import escrow_drive
from marketplace.models import Order
from offerhub.models import Event
from payments.ledger import user_accounts
from tests.escrow.test_lifecycle import USD, ledger_equals_chain
from tests.escrow.test_step_runner import applied, fault
from tests.marketplace.test_dispute_case_api import disputed, error, net, post, under_review

pytestmark = pytest.mark.django_db(transaction=True)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def a_file(name: str = "photo.png", content: bytes = PNG) -> dict:
    return {"name": name, "contentBase64": b64(content)}


def fields(response) -> list[str]:
    return [item["field"] for item in error(response)["details"]["fields"]]


@pytest.fixture
def writer(auth_client):
    """The marketplace's key, speaking for its buyers and sellers."""
    return auth_client(scopes=["read", "write"])


@pytest.fixture
def support(auth_client):
    return auth_client(scopes=["read", "support"])


@pytest.fixture
def agent(auth_client):
    """Support that also writes to the case (its thread, its evidence)."""
    return auth_client(scopes=["read", "write", "support"])


# --- Evidence ----------------------------------------------------------------------------------


def test_both_sides_add_evidence_and_the_file_is_downloaded(chain, funded_user, trustless_work, writer, agent):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    assert dispute["respondBy"] and dispute["respondedAt"] is None and dispute["overdue"] is False
    path = f"/disputes/{dispute['id']}/evidence"

    text = post(writer, path, {"submittedBy": "BUYER", "text": "The logo is blurry at 64 px"})
    link = post(writer, path, {"submittedBy": "SELLER", "link": "https://example.com/final.svg", "text": None})
    photo = post(writer, path, {"submittedBy": "BUYER", "text": "as shown on the site", "file": a_file()})
    report = post(agent, path, {"submittedBy": "SUPPORT", "file": a_file("Report.PDF", PDF)})

    for response in (text, link, photo, report):
        assert response.status_code == 201, response.content
    photo_data = photo.json()["data"]
    assert photo_data["id"].startswith("evd_") and photo_data["disputeId"] == dispute["id"]
    assert (photo_data["submittedBy"], photo_data["kind"], photo_data["text"], photo_data["link"]) == (
        "BUYER",
        "FILE",
        "as shown on the site",
        None,
    )
    assert (photo_data["file"]["name"], photo_data["file"]["size"]) == ("photo.png", len(PNG))
    assert (link.json()["data"]["kind"], link.json()["data"]["link"]) == ("LINK", "https://example.com/final.svg")

    listed = writer.get(f"/api/v1{path}")
    assert listed.status_code == 200 and listed.json()["hasMore"] is False
    assert [item["id"] for item in listed.json()["data"]] == [
        r.json()["data"]["id"] for r in (report, photo, link, text)
    ]  # newest first, like every list
    paged = writer.get(f"/api/v1{path}", {"limit": 2})
    assert len(paged.json()["data"]) == 2 and paged.json()["nextCursor"] == photo_data["id"]

    downloaded = writer.get(photo_data["file"]["url"])
    assert downloaded.status_code == 200
    assert b"".join(downloaded.streaming_content) == PNG
    assert downloaded["Content-Type"] == "image/png"
    assert downloaded["Content-Disposition"].startswith("attachment;")
    assert downloaded["X-Content-Type-Options"] == "nosniff"
    pdf = writer.get(report.json()["data"]["file"]["url"])
    assert (pdf.status_code, pdf["Content-Type"]) == (200, "application/pdf")

    # The seller answered (their link): the response clock stopped.
    case = writer.get(f"/api/v1/disputes/{dispute['id']}").json()["data"]
    assert case["respondedAt"] and case["overdue"] is False
    events = Event.objects.filter(type="dispute.evidence_added").order_by("pk")
    assert [(e.payload["submittedBy"], e.payload["kind"]) for e in events] == [
        ("BUYER", "TEXT"),
        ("SELLER", "LINK"),
        ("BUYER", "FILE"),
        ("SUPPORT", "FILE"),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"submittedBy": "BUYER", "file": a_file("tool.exe", b"MZ\x90\x00")}, "file"),
        ({"submittedBy": "BUYER", "file": a_file("photo.png", PDF)}, "file"),  # a PDF named .png
        ({"submittedBy": "BUYER", "file": a_file("notes.txt", b"hello")}, "file"),
        ({"submittedBy": "BUYER", "file": {"name": "a.png", "contentBase64": "not base64!"}}, "file.contentBase64"),
        ({"submittedBy": "BUYER", "file": {"name": "a.png", "contentBase64": ""}}, "file.contentBase64"),
        ({"submittedBy": "BUYER", "file": {"name": "a.png", "contentBase64": 12}}, "file.contentBase64"),
        ({"submittedBy": "BUYER", "file": {"name": "a\x00.png", "contentBase64": b64(PNG)}}, "file.name"),
        ({"submittedBy": "BUYER", "file": {"name": "a.png"}}, "file.contentBase64"),
        ({"submittedBy": "BUYER", "file": {**a_file(), "mime": "image/png"}}, "file.mime"),
        ({"submittedBy": "BUYER", "file": "photo.png"}, "file"),
        ({"submittedBy": "BUYER", "text": "a\x00b"}, "text"),
        ({"submittedBy": "BUYER", "text": "x" * 2001}, "text"),
        ({"submittedBy": "BUYER", "text": 42}, "text"),
        ({"submittedBy": "BUYER", "link": "javascript:alert(1)"}, "link"),
        ({"submittedBy": "BUYER", "link": "https://example.com", "file": a_file()}, "link"),
        ({"submittedBy": "BUYER"}, "text"),
        ({"submittedBy": "JUDGE", "text": "hi"}, "submittedBy"),
        ({"text": "hi"}, "submittedBy"),
        ({"submittedBy": "BUYER", "text": "hi", "party": "BUYER"}, "party"),
    ],
)
def test_bad_evidence_is_a_400_naming_the_field(chain, funded_user, trustless_work, writer, body, field):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))

    refused = post(writer, f"/disputes/{dispute['id']}/evidence", body)

    assert refused.status_code == 400, refused.content
    assert error(refused)["code"] == "VALIDATION_ERROR" and fields(refused) == [field], refused.content
    assert not DisputeEvidence.objects.exists()
    assert not Event.objects.filter(type="dispute.evidence_added").exists()


def test_an_oversize_evidence_file_is_a_413(chain, funded_user, trustless_work, writer, settings, monkeypatch):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    path = f"/disputes/{dispute['id']}/evidence"

    # Over the evidence limit (10 MB, lowered here so the test stays small): refused before storing.
    monkeypatch.setattr("disputes.services.EVIDENCE_MAX_BYTES", 1000)
    large_file = post(writer, path, {"submittedBy": "BUYER", "file": a_file(content=PNG + bytes(1000))})
    assert large_file.status_code == 413, large_file.content
    assert (error(large_file)["code"], error(large_file)["details"]["field"]) == ("PAYLOAD_TOO_LARGE", "file")
    assert error(large_file)["details"]["maxBytes"] == 1000

    # Over the request body limit: refused before it is even parsed.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50_000
    large_body = post(writer, path, {"submittedBy": "BUYER", "file": a_file(content=PNG + bytes(60_000))})
    assert large_body.status_code == 413, large_body.content
    assert (error(large_body)["code"], error(large_body)["details"]["field"]) == ("PAYLOAD_TOO_LARGE", "body")
    assert not DisputeEvidence.objects.exists()


def test_evidence_and_messages_after_the_resolution_are_refused(chain, funded_user, trustless_work, writer, agent):
    dispute = under_review(writer, agent, funded_user("100.00"), funded_user("0"))
    path = f"/disputes/{dispute['id']}"
    assert post(agent, f"{path}/resolve", {"decision": "FULL_REFUND"}).status_code == 200

    late_evidence = post(writer, f"{path}/evidence", {"submittedBy": "SELLER", "text": "wait"})
    late_message = post(writer, f"{path}/messages", {"postedBy": "SELLER", "body": "wait"})

    for late in (late_evidence, late_message):
        assert late.status_code == 409 and error(late)["code"] == "INVALID_STATE", late.content
        assert error(late)["details"]["currentState"] == "RESOLVED"
    assert not DisputeEvidence.objects.exists() and not DisputeMessage.objects.exists()
    # Support may still note things down on a closed case; the parties never see it.
    note = post(agent, f"{path}/messages", {"postedBy": "SUPPORT", "body": "refunded: proof", "internal": True})
    assert note.status_code == 201, note.content


# --- The thread --------------------------------------------------------------------------------


def test_the_thread_hides_support_notes_from_keys_without_the_support_scope(
    chain, funded_user, trustless_work, writer, agent, mailoutbox
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    path = f"/disputes/{dispute['id']}/messages"

    said = post(writer, path, {"postedBy": "SELLER", "body": "I sent the vector file", "authorName": "Sam's Studio"})
    asked = post(writer, path, {"postedBy": "BUYER", "body": "It is still blurry"})
    note = post(agent, path, {"postedBy": "SUPPORT", "body": "Seller has a good record", "internal": True})
    answer = post(agent, path, {"postedBy": "SUPPORT", "body": "We are looking into it"})

    for response in (said, asked, note, answer):
        assert response.status_code == 201, response.content
    said_data = said.json()["data"]
    assert said_data["id"].startswith("msg_")
    assert (said_data["postedBy"], said_data["authorName"], said_data["body"], said_data["internal"]) == (
        "SELLER",
        "Sam's Studio",
        "I sent the vector file",
        False,
    )
    assert note.json()["data"]["internal"] is True

    parties_view = writer.get(f"/api/v1{path}")
    assert parties_view.status_code == 200
    assert [m["id"] for m in parties_view.json()["data"]] == [r.json()["data"]["id"] for r in (answer, asked, said)]
    support_view = agent.get(f"/api/v1{path}")
    assert [m["id"] for m in support_view.json()["data"]] == [
        r.json()["data"]["id"] for r in (answer, note, asked, said)
    ]
    assert Event.objects.filter(type="dispute.message_posted").count() == 3  # never the note
    assert {e.payload["postedBy"] for e in Event.objects.filter(type="dispute.message_posted")} == {
        "SELLER",
        "BUYER",
        "SUPPORT",
    }
    assert not any("good record" in message.body for message in mailoutbox)
    assert any("still blurry" in message.body and seller.email in message.to for message in mailoutbox)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"postedBy": "BUYER", "body": ""}, "body"),
        ({"postedBy": "BUYER", "body": "   "}, "body"),
        ({"postedBy": "BUYER", "body": "x" * 2001}, "body"),
        ({"postedBy": "BUYER", "body": "a\x00b"}, "body"),
        ({"postedBy": "BUYER"}, "body"),
        ({"postedBy": "BUYER", "body": "hi", "internal": "yes"}, "internal"),
        ({"postedBy": "BUYER", "body": "hi", "internal": 1}, "internal"),
        ({"postedBy": "BUYER", "body": "hi", "authorName": "x" * 101}, "authorName"),
        ({"postedBy": "BUYER", "body": "hi", "authorName": "a\x00"}, "authorName"),
        ({"postedBy": "judge", "body": "hi"}, "postedBy"),
        ({"postedBy": "BUYER", "body": "hi", "to": "SELLER"}, "to"),
    ],
)
def test_a_bad_message_is_a_400_naming_the_field(chain, funded_user, trustless_work, writer, body, field):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))

    refused = post(writer, f"/disputes/{dispute['id']}/messages", body)

    assert refused.status_code == 400, refused.content
    assert error(refused)["code"] == "VALIDATION_ERROR" and fields(refused) == [field], refused.content
    assert not DisputeMessage.objects.exists()


# --- Access: 401, 403, 404 ---------------------------------------------------------------------


def _writes(dispute_id: str) -> list[tuple[str, dict]]:
    return [
        (f"/disputes/{dispute_id}/evidence", {"submittedBy": "BUYER", "text": "x"}),
        (f"/disputes/{dispute_id}/messages", {"postedBy": "BUYER", "body": "x"}),
        (f"/disputes/{dispute_id}/withdraw", {"withdrawnBy": "BUYER"}),
        (f"/disputes/{dispute_id}/reassign", {"assignedTo": "agent-bob"}),
    ]


def _reads(dispute_id: str, evidence_id: str) -> list[str]:
    return [
        f"/api/v1/disputes/{dispute_id}/evidence",
        f"/api/v1/disputes/{dispute_id}/evidence/{evidence_id}/file",
        f"/api/v1/disputes/{dispute_id}/messages",
    ]


def test_without_a_key_nothing_is_read_or_written(chain, funded_user, trustless_work, writer):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    evidence = post(writer, f"/disputes/{dispute['id']}/evidence", {"submittedBy": "BUYER", "file": a_file()})
    anonymous = APIClient()

    for path in _reads(dispute["id"], evidence.json()["data"]["id"]):
        assert anonymous.get(path).status_code == 401, path
    for path, body in _writes(dispute["id"]):
        refused = anonymous.post(f"/api/v1{path}", body, format="json", HTTP_IDEMPOTENCY_KEY=f"anon-{path}")
        assert refused.status_code == 401 and error(refused)["code"] == "UNAUTHORIZED", path
    assert DisputeEvidence.objects.count() == 1 and Dispute.objects.get().status == Dispute.Status.OPEN


def test_each_write_needs_its_scope(chain, funded_user, trustless_work, writer, auth_client):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    reader = auth_client(scopes=["read"])
    path = f"/disputes/{dispute['id']}"

    for write_path, body in _writes(dispute["id"]):
        refused = post(reader, write_path, body)
        assert refused.status_code == 403 and error(refused)["code"] == "INSUFFICIENT_SCOPE", write_path
    assert post(writer, f"{path}/reassign", {"assignedTo": "agent-bob"}).status_code == 403  # support's
    # Speaking as support, or writing an internal note, needs the support scope too.
    as_support = [
        post(writer, f"{path}/evidence", {"submittedBy": "SUPPORT", "text": "from support"}),
        post(writer, f"{path}/messages", {"postedBy": "SUPPORT", "body": "from support"}),
        post(writer, f"{path}/messages", {"postedBy": "BUYER", "body": "secret", "internal": True}),
    ]
    for refused in as_support:
        assert refused.status_code == 403 and error(refused)["code"] == "INSUFFICIENT_SCOPE", refused.content
    # A party cannot write support's internal notes, whatever the key.
    party_note = post(
        auth_client(scopes=["write", "support"]),
        f"{path}/messages",
        {"postedBy": "BUYER", "body": "secret", "internal": True},
    )
    assert party_note.status_code == 403 and error(party_note)["details"]["field"] == "internal"
    assert not DisputeEvidence.objects.exists() and not DisputeMessage.objects.exists()
    assert reader.get(f"/api/v1{path}/evidence").status_code == 200  # reading is `read`
    assert reader.get(f"/api/v1{path}/messages").status_code == 200


def test_another_marketplaces_key_and_unknown_ids_are_404(chain, funded_user, trustless_work, writer, auth_client):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    path = f"/disputes/{dispute['id']}"
    photo = post(writer, f"{path}/evidence", {"submittedBy": "BUYER", "file": a_file()}).json()["data"]
    text = post(writer, f"{path}/evidence", {"submittedBy": "BUYER", "text": "words"}).json()["data"]
    stranger = auth_client(scopes=["*"], marketplace_id="mkt_other")

    for read_path in _reads(dispute["id"], photo["id"]):
        hidden = stranger.get(read_path)
        assert hidden.status_code == 404 and error(hidden)["code"] == "DISPUTE_NOT_FOUND", read_path
    for write_path, body in _writes(dispute["id"]):
        hidden = post(stranger, write_path, body)
        assert hidden.status_code == 404 and error(hidden)["code"] == "DISPUTE_NOT_FOUND", write_path
    assert DisputeEvidence.objects.count() == 2 and not DisputeMessage.objects.exists()
    assert Dispute.objects.get().status == Dispute.Status.OPEN

    for read_path in _reads("dsp_nope", photo["id"]):
        assert writer.get(read_path).status_code == 404
    unknown = writer.get(f"/api/v1{path}/evidence/evd_nope/file")
    assert unknown.status_code == 404 and error(unknown)["details"]["evidenceId"] == "evd_nope"
    no_file = writer.get(f"/api/v1{path}/evidence/{text['id']}/file")
    assert no_file.status_code == 404 and error(no_file)["code"] == "NOT_FOUND"
    # Another case's evidence is not this case's.
    other = disputed(writer, funded_user("100.00"), funded_user("0"))
    crossed = writer.get(f"/api/v1/disputes/{other['id']}/evidence/{photo['id']}/file")
    assert crossed.status_code == 404


# --- Withdrawal, reassignment ------------------------------------------------------------------


def test_a_withdrawn_dispute_lets_the_buyer_release_and_the_resolver_pays_the_seller(
    chain, funded_user, trustless_work, writer, support
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = disputed(writer, buyer, seller)
    path = f"/disputes/{dispute['id']}"

    not_the_opener = post(writer, f"{path}/withdraw", {"withdrawnBy": "SELLER"})
    assert not_the_opener.status_code == 403 and error(not_the_opener)["code"] == "FORBIDDEN"
    bad = post(writer, f"{path}/withdraw", {"withdrawnBy": "SUPPORT"})
    assert bad.status_code == 400 and fields(bad) == ["withdrawnBy"]

    withdrawn = post(writer, f"{path}/withdraw", {"withdrawnBy": "BUYER"})

    assert withdrawn.status_code == 200, withdrawn.content
    data = withdrawn.json()["data"]
    assert (data["status"], data["order"]["status"]) == ("WITHDRAWN", "IN_PROGRESS")
    assert data["withdrawnAt"] and data["overdue"] is False
    assert data["order"]["escrow"]["status"] == "DISPUTED"  # Trustless Work v1 cannot clear the flag
    again = post(writer, f"{path}/withdraw", {"withdrawnBy": "BUYER"})
    assert again.status_code == 409 and error(again)["code"] == "INVALID_STATE"
    assert error(again)["details"] == {**error(again)["details"], "currentState": "WITHDRAWN"}
    listed = support.get("/api/v1/disputes", {"status": "withdrawn"}).json()["data"]
    assert [item["id"] for item in listed] == [dispute["id"]]
    withdrawn_event = Event.objects.get(type="dispute.withdrawn").payload
    assert (withdrawn_event["withdrawnBy"], withdrawn_event["orderId"]) == ("BUYER", dispute["orderId"])
    assert Event.objects.filter(type="order.dispute_withdrawn").count() == 1

    released = post(writer, f"/orders/{dispute['orderId']}/resolution/release", {})

    assert released.status_code == 200, released.content
    assert released.json()["data"]["status"] == "CLOSED"
    # The contract still carries the dispute flag: the platform paid it as dispute resolver.
    assert EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).count() == 1
    assert applied("resolve-dispute") == 1
    assert user_accounts(seller)[0].balance == net(30 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD and user_accounts(buyer)[1].balance == 0
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


def test_only_an_open_dispute_is_withdrawn(chain, funded_user, trustless_work, writer, support):
    dispute = under_review(writer, support, funded_user("100.00"), funded_user("0"))

    late = post(writer, f"/disputes/{dispute['id']}/withdraw", {"withdrawnBy": "BUYER"})

    assert late.status_code == 409 and error(late)["code"] == "INVALID_STATE", late.content
    assert (error(late)["details"]["currentState"], error(late)["details"]["allowedStates"]) == (
        "UNDER_REVIEW",
        ["OPEN"],
    )
    assert Dispute.objects.get().status == Dispute.Status.UNDER_REVIEW
    assert Order.objects.get().status == Order.Status.DISPUTED


def test_support_reassigns_a_case_under_review(chain, funded_user, trustless_work, writer, support):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    path = f"/disputes/{dispute['id']}/reassign"

    early = post(support, path, {"assignedTo": "agent-bob"})
    assert early.status_code == 409 and error(early)["details"]["allowedStates"] == ["UNDER_REVIEW"]
    assert post(support, f"/disputes/{dispute['id']}/assign", {"assignedTo": "agent-ana"}).status_code == 200
    for body, field in (({"assignedTo": ""}, "assignedTo"), ({"agentId": "x" * 101}, "agentId"), ({}, "assignedTo")):
        refused = post(support, path, body)
        assert refused.status_code == 400 and fields(refused) == [field], refused.content

    handed = post(support, path, {"agentId": "agent-bob"})  # the docs' name, as for assign

    assert handed.status_code == 200, handed.content
    assert (handed.json()["data"]["status"], handed.json()["data"]["assignedTo"]) == ("UNDER_REVIEW", "agent-bob")
    assert Dispute.objects.get().assigned_to == "agent-bob"


# --- The response deadline ---------------------------------------------------------------------


def test_an_unanswered_case_past_its_deadline_is_overdue_until_the_other_side_answers(
    chain, funded_user, trustless_work, writer, support
):
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    other = disputed(writer, funded_user("100.00"), funded_user("0"))
    Dispute.objects.filter(public_id=dispute["id"]).update(respond_by=timezone.now() - timedelta(hours=1))

    case = support.get(f"/api/v1/disputes/{dispute['id']}").json()["data"]
    assert case["overdue"] is True and case["respondedAt"] is None
    overdue = support.get("/api/v1/disputes", {"overdue": "true"}).json()["data"]
    on_time = support.get("/api/v1/disputes", {"overdue": "false"}).json()["data"]
    assert ([d["id"] for d in overdue], [d["id"] for d in on_time]) == ([dispute["id"]], [other["id"]])
    bad = support.get("/api/v1/disputes", {"overdue": "maybe"})
    assert bad.status_code == 400 and fields(bad) == ["overdue"]

    # The buyer opened it: the buyer's own word does not count as the answer; the seller's does.
    thread = f"/disputes/{dispute['id']}/messages"
    assert post(writer, thread, {"postedBy": "BUYER", "body": "?"}).status_code == 201
    assert support.get(f"/api/v1/disputes/{dispute['id']}").json()["data"]["overdue"] is True
    assert post(writer, thread, {"postedBy": "SELLER", "body": "Here"}).status_code == 201

    case = support.get(f"/api/v1/disputes/{dispute['id']}").json()["data"]
    assert case["overdue"] is False and case["respondedAt"]
    assert support.get("/api/v1/disputes", {"overdue": "true"}).json()["data"] == []


# --- Resolution: per milestone, and provider faults -------------------------------------------


def test_a_split_per_milestone_pays_each_milestone_as_given(chain, funded_user, trustless_work, writer, support):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    dispute = under_review(writer, support, buyer, seller, milestones=milestones)
    path = f"/disputes/{dispute['id']}/resolve"
    shares = [{"milestoneRef": "draft", "releaseAmount": "4.00"}, {"milestoneRef": "final", "releaseAmount": "15.00"}]

    resolved = post(support, path, {"decision": "SPLIT", "milestones": shares, "note": "partly delivered"})

    assert resolved.status_code == 200, resolved.content
    data = resolved.json()["data"]
    assert (data["releaseAmount"], data["refundAmount"], data["order"]["status"]) == ("19.00", "11.00", "CLOSED")
    # Not the default fill-in-order (10.00 + 9.00): each milestone is split as given, with its own fees.
    assert user_accounts(seller)[0].balance == net(4 * USD) + net(15 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD + net(6 * USD) + net(5 * USD)
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"decision": "SPLIT", "milestones": [{"milestoneRef": "draft", "releaseAmount": "4.005"}]},
            400,
            "VALIDATION_ERROR",
            "milestones.0.releaseAmount",
        ),
        (
            {"decision": "SPLIT", "milestones": [{"milestoneRef": "draft", "releaseAmount": 4}]},
            400,
            "VALIDATION_ERROR",
            "milestones.0.releaseAmount",
        ),
        (
            {"decision": "SPLIT", "milestones": [{"milestoneRef": "draft"}]},
            400,
            "VALIDATION_ERROR",
            "milestones.0.releaseAmount",
        ),
        ({"decision": "SPLIT", "milestones": ["draft"]}, 400, "VALIDATION_ERROR", "milestones.0"),
        ({"decision": "SPLIT", "milestones": []}, 400, "VALIDATION_ERROR", "milestones"),
        (
            {"decision": "SPLIT", "milestones": [{"milestoneRef": "draft", "releaseAmount": "1.00"}] * 2},
            400,
            "VALIDATION_ERROR",
            "milestones",
        ),
        (
            {"decision": "FULL_RELEASE", "milestones": [{"milestoneRef": "draft", "releaseAmount": "1.00"}]},
            400,
            "INVALID_REQUEST",
            "milestones",
        ),
        (
            {"decision": "SPLIT", "milestones": [{"milestoneRef": "nope", "releaseAmount": "1.00"}]},
            404,
            "MILESTONE_NOT_FOUND",
            "milestones",
        ),
    ],
)
def test_a_bad_per_milestone_split_pays_nothing(
    chain, funded_user, trustless_work, writer, support, body, status, code, field
):
    buyer, seller = funded_user("100.00"), funded_user("0")
    milestones = [
        {"ref": "draft", "description": "Draft", "amount": "10.00"},
        {"ref": "final", "description": "Final", "amount": "20.00"},
    ]
    dispute = under_review(writer, support, buyer, seller, milestones=milestones)

    refused = post(support, f"/disputes/{dispute['id']}/resolve", body)

    assert refused.status_code == status and error(refused)["code"] == code, refused.content
    details = error(refused)["details"]
    assert (fields(refused) if "fields" in details else [details["field"]]) == [field]
    assert Dispute.objects.get().status == Dispute.Status.UNDER_REVIEW
    assert not EscrowStep.objects.filter(action__in=RESOLUTION_STEPS).exists()


@pytest.mark.parametrize(
    ("status", "options"),
    [
        (503, {}),  # refused before the chain saw it
        (503, {"after_processing": True}),  # applied on chain, the answer lost
        (None, {"timeout": True, "timeout_seconds": 1.5, "after_processing": True}),  # applied, no answer in time
    ],
    ids=["5xx", "5xx-after-applying", "timeout-after-applying"],
)
def test_a_provider_fault_while_submitting_the_resolution_resumes_and_pays_once(
    chain, funded_user, trustless_work, writer, support, settings, status, options
):
    settings.OFFERHUB_SYNC_WAIT_SECONDS = 0.5
    settings.TRUSTLESS_WORK_TIMEOUT_SECONDS = 0.5
    buyer, seller = funded_user("100.00"), funded_user("0")
    dispute = under_review(writer, support, buyer, seller)
    fault("send-transaction", status, remaining=1, **options)

    pending = post(support, f"/disputes/{dispute['id']}/resolve", {"decision": "FULL_RELEASE"})

    assert pending.status_code == 202, pending.content
    data = pending.json()["data"]
    assert (data["status"], data["resolutionDecision"]) == ("RESOLVED", "FULL_RELEASE")
    assert data["order"]["status"] == "RELEASE_REQUESTED"
    step = EscrowStep.objects.get(action__in=RESOLUTION_STEPS)
    assert step.status in EscrowStep.OPEN
    assert user_accounts(seller)[0].balance == 0  # the ledger waits for the chain's word
    again = post(support, f"/disputes/{dispute['id']}/resolve", {"decision": "FULL_REFUND"})
    assert again.status_code == 409 and error(again)["details"]["currentState"] == "RESOLVED"

    escrow_drive(escrow_pk=Escrow.objects.get().pk)  # the runner resumes the step

    assert Order.objects.get().status == Order.Status.CLOSED
    assert EscrowStep.objects.get(action__in=RESOLUTION_STEPS).status == EscrowStep.Status.CONFIRMED
    assert applied("resolve-dispute") == 1  # paid exactly once on chain
    assert user_accounts(seller)[0].balance == net(30 * USD)
    assert user_accounts(buyer)[0].balance == 70 * USD
    assert Event.objects.filter(type="dispute.resolved").count() == 1
    ledger_equals_chain(chain, trustless_work, Escrow.objects.get(), buyer, seller)
    closed = support.get(f"/api/v1/disputes/{dispute['id']}").json()["data"]
    assert closed["order"]["status"] == "CLOSED" and closed["order"]["escrow"]["status"] == "RELEASED"


def test_a_retried_upload_with_its_idempotency_key_stores_one_piece(chain, funded_user, trustless_work, writer):
    """Why files come base64 in JSON: the retry fingerprints as the same request."""
    dispute = disputed(writer, funded_user("100.00"), funded_user("0"))
    path = f"/api/v1/disputes/{dispute['id']}/evidence"
    body = {"submittedBy": "BUYER", "text": "the receipt", "file": a_file("receipt.pdf", PDF)}

    first = writer.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="upload-1")
    retried = writer.post(path, dict(reversed(body.items())), format="json", HTTP_IDEMPOTENCY_KEY="upload-1")
    other = writer.post(path, {**body, "text": "another"}, format="json", HTTP_IDEMPOTENCY_KEY="upload-1")

    assert first.status_code == retried.status_code == 201, retried.content
    assert retried.content == first.content and retried["Idempotency-Replay"] == "true"
    assert other.status_code == 409 and error(other)["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert DisputeEvidence.objects.count() == 1
    assert Event.objects.filter(type="dispute.evidence_added").count() == 1
