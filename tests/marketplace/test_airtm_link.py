"""Linking a member's Airtm account (API.md §4 `POST /users/{id}/airtm/link`, and the wallet's
page): checked over HTTP against the sandbox Airtm the live server serves."""

import itertools

import pytest

from marketplace.models import User
from offerhub.models import AuditLog, Event
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
keys = (f"airtm-link-{n}" for n in itertools.count())


@pytest.fixture
def sandbox_airtm(live_server, settings):
    """Point our Airtm client at the sandbox, with Airtm users of each kind."""
    from sandbox.airtm_engine import airtm_user_create
    from sandbox.models import SandboxAirtmUser

    settings.OFFERHUB_AIRTM_BASE_URL = live_server.url + "/sandbox/airtm/v2"
    settings.OFFERHUB_AIRTM_CHECKOUT_BASE_URL = live_server.url + "/sandbox/airtm/checkout"
    # The sandbox seeds ana, ben and carla; ours are the same kinds whether seeded or not.
    SandboxAirtmUser.objects.filter(email__endswith="@airtm.sandbox").delete()
    return {
        "ana": airtm_user_create(email="ana@airtm.sandbox", first_name="Ana"),
        "dan": airtm_user_create(email="dan@airtm.sandbox", first_name="Dan"),
        "ben": airtm_user_create(email="ben@airtm.sandbox", is_verified=False),
        "carla": airtm_user_create(email="carla@airtm.sandbox", status="inactive"),
    }


def fault(**fields):
    from sandbox.models import SandboxFault

    return SandboxFault.objects.create(service="airtm", **fields)


def link(client, user_id: str, body):
    return client.post(f"/api/v1/users/{user_id}/airtm/link", body, format="json", HTTP_IDEMPOTENCY_KEY=next(keys))


def stored(user: User) -> tuple:
    user = User.objects.get(pk=user.pk)
    return user.airtm_user_id, user.airtm_email, user.airtm_linked_at


def link_records(user: User) -> tuple[int, int]:
    return (
        AuditLog.objects.filter(action="user.airtm_linked", resource_id=user.public_id).count(),
        Event.objects.filter(type="user.airtm_linked", aggregate_id=user.public_id).count(),
    )


@pytest.fixture
def writer(auth_client):
    return auth_client(scopes=["read", "write"])


@pytest.fixture
def member(db):
    return UserFactory()


# --- API ---------------------------------------------------------------------------------


def test_link_checks_airtm_stores_the_link_and_tells_subscribers(writer, member, sandbox_airtm):
    response = link(writer, member.public_id, {"email": "Ana@Airtm.Sandbox"})

    assert response.status_code == 200, response.content
    data = response.json()["data"]
    ana = sandbox_airtm["ana"]
    assert data["userId"] == member.public_id and data["airtmUserId"] == ana.airtm_id
    assert data["eligible"] is True
    assert data["email"] == data["airtmEmail"] == "ana@airtm.sandbox"
    assert data["airtmLinkedAt"] == data["linkedAt"] and data["linkedAt"]
    assert stored(member)[:2] == (ana.airtm_id, "ana@airtm.sandbox")

    event = Event.objects.get(type="user.airtm_linked", aggregate_id=member.public_id)
    assert event.payload == {"userId": member.public_id, "airtmUserId": ana.airtm_id, "linkedAt": data["linkedAt"]}
    audit = AuditLog.objects.get(action="user.airtm_linked", resource_id=member.public_id)
    assert (audit.actor_type, audit.actor_id) == ("API_KEY", writer.api_key.id)
    assert audit.payload_after["airtmUserId"] == ana.airtm_id

    shown = writer.get(f"/api/v1/users/{member.public_id}").json()["data"]
    assert (shown["airtmLinked"], shown["airtmUserId"], shown["airtmLinkedAt"]) == (
        True,
        ana.airtm_id,
        data["linkedAt"],
    )


def test_the_user_object_says_not_linked_before(writer, member, sandbox_airtm):
    shown = writer.get(f"/api/v1/users/{member.public_id}").json()["data"]
    assert (shown["airtmLinked"], shown["airtmUserId"], shown["airtmLinkedAt"]) == (False, None, None)


def test_linking_the_same_account_again_asks_airtm_nothing(writer, member, sandbox_airtm):
    first = link(writer, member.public_id, {"email": "ana@airtm.sandbox"}).json()["data"]
    fault(method="GET", path_contains="/users/", status_code=503)  # Airtm would fail if asked

    again = link(writer, member.public_id, {"email": "ANA@airtm.sandbox"})

    assert again.status_code == 200, again.content
    assert again.json()["data"] == first
    assert link_records(member) == (1, 1)


def test_linking_a_different_account_is_a_conflict(writer, member, sandbox_airtm):
    assert link(writer, member.public_id, {"email": "ana@airtm.sandbox"}).status_code == 200
    before = stored(member)

    response = link(writer, member.public_id, {"email": "dan@airtm.sandbox"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "AIRTM_USER_ALREADY_LINKED"
    assert stored(member) == before and link_records(member) == (1, 1)


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("nobody@airtm.sandbox", "USER_NOT_FOUND"),
        ("carla@airtm.sandbox", "USER_INACTIVE"),
        ("ben@airtm.sandbox", "USER_NOT_VERIFIED"),
    ],
)
def test_an_account_airtm_refuses_is_not_linked(writer, member, sandbox_airtm, email, reason):
    response = link(writer, member.public_id, {"email": email})

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "AIRTM_USER_INVALID"
    assert error["details"]["reason"] == reason and error["details"]["field"] == "email"
    assert stored(member) == ("", "", None) and link_records(member) == (0, 0)


def test_unverified_accounts_link_when_verification_is_not_required(writer, member, sandbox_airtm, settings):
    settings.OFFERHUB_AIRTM_REQUIRE_VERIFIED = False

    response = link(writer, member.public_id, {"email": "ben@airtm.sandbox"})

    assert response.status_code == 200, response.content
    assert stored(member)[0] == sandbox_airtm["ben"].airtm_id


def test_airtm_down_is_a_provider_error_and_links_nothing(writer, member, sandbox_airtm):
    fault(method="GET", path_contains="/users/", status_code=503)

    response = link(writer, member.public_id, {"email": "ana@airtm.sandbox"})

    assert response.status_code in (502, 503, 504)
    assert response.json()["error"]["code"].startswith("PROVIDER_")
    assert stored(member) == ("", "", None) and link_records(member) == (0, 0)


def test_unknown_users_and_other_marketplaces_users_are_not_found(auth_client, sandbox_airtm):
    shop = auth_client(scopes=["read", "write"], marketplace_id="shop-a")
    theirs = UserFactory(marketplace_id="shop-b")

    for user_id in ("usr_nobody", theirs.public_id):
        response = link(shop, user_id, {"email": "ana@airtm.sandbox"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "USER_NOT_FOUND"
    assert stored(theirs) == ("", "", None)


def test_a_key_needs_the_write_scope(auth_client, api_client, member, sandbox_airtm):
    assert link(api_client, member.public_id, {"email": "ana@airtm.sandbox"}).status_code == 401
    reader = auth_client(scopes=["read"])
    response = link(reader, member.public_id, {"email": "ana@airtm.sandbox"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INSUFFICIENT_SCOPE"
    assert stored(member) == ("", "", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": ""}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": 5}, "email"),
        ({"email": "a\x00b@airtm.sandbox"}, "email"),
        ({"email": "a" * 250 + "@airtm.sandbox"}, "email"),
        ({"email": "ana@airtm.sandbox", "colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(writer, member, sandbox_airtm, body, field):
    response = link(writer, member.public_id, body)

    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    assert field in {details.get("field")} | {item["field"] for item in details.get("fields", [])}
    assert stored(member) == ("", "", None)


# --- web -------------------------------------------------------------------------------


def test_the_wallet_offers_the_link_page(client, member, sandbox_airtm):
    client.force_login(member)

    wallet = client.get("/wallet/").content.decode()

    assert "/wallet/airtm/link/" in wallet and "Link your Airtm account" in wallet


def test_a_member_links_their_account_on_the_page(client, member, sandbox_airtm):
    client.force_login(member)
    page = client.get("/wallet/airtm/link/")
    assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content

    response = client.post("/wallet/airtm/link/", {"email": "ana@airtm.sandbox"}, follow=True)

    assert response.redirect_chain[-1][0] == "/wallet/"
    assert stored(member)[:2] == (sandbox_airtm["ana"].airtm_id, "ana@airtm.sandbox")
    audit = AuditLog.objects.get(action="user.airtm_linked", resource_id=member.public_id)
    assert (audit.actor_type, audit.actor_id) == ("USER", member.public_id)
    assert "Airtm account linked: ana@airtm.sandbox" in response.content.decode()


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("nobody@airtm.sandbox", "No Airtm account uses this e-mail address"),
        ("carla@airtm.sandbox", "This Airtm account is not active"),
        ("ben@airtm.sandbox", "Verify your identity at Airtm first"),
    ],
)
def test_the_page_explains_a_refusal_by_the_field(client, member, sandbox_airtm, email, message):
    client.force_login(member)

    response = client.post("/wallet/airtm/link/", {"email": email})

    assert response.status_code == 200
    assert response.context["form"].errors["email"][0].startswith(message)
    assert message in response.content.decode()
    assert stored(member) == ("", "", None)


def test_the_page_says_when_airtm_cannot_be_reached(client, member, sandbox_airtm):
    fault(method="GET", path_contains="/users/", status_code=503)
    client.force_login(member)

    response = client.post("/wallet/airtm/link/", {"email": "ana@airtm.sandbox"})

    assert response.status_code == 200
    assert "could not reach Airtm" in response.content.decode()
    assert stored(member) == ("", "", None)


def test_the_page_needs_a_signed_in_member(client, sandbox_airtm):
    response = client.get("/wallet/airtm/link/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_two_links_at_once_one_account_wins(auth_client, member, sandbox_airtm):
    """Both look-ups are in flight together (slowed at the sandbox); the row lock's re-check lets
    only one account in."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    fault(method="GET", path_contains="/users/", latency_ms=400)
    clients = [auth_client(scopes=["read", "write"]) for _ in range(2)]

    def attempt(args):
        client, email = args
        try:
            return link(client, member.public_id, {"email": email}).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(attempt, zip(clients, ["ana@airtm.sandbox", "dan@airtm.sandbox"], strict=True)))

    assert statuses == [200, 409]
    assert stored(member)[0] in {sandbox_airtm["ana"].airtm_id, sandbox_airtm["dan"].airtm_id}
    assert link_records(member) == (1, 1)


def test_the_page_reads_little(client, member, sandbox_airtm, django_assert_max_num_queries):
    client.force_login(member)
    with django_assert_max_num_queries(6):
        assert client.get("/wallet/airtm/link/").status_code == 200


def test_support_sees_the_link_in_the_admin_and_cannot_edit_it(client, writer, member, sandbox_airtm):
    link(writer, member.public_id, {"email": "ana@airtm.sandbox"})
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = client.get(f"/admin/marketplace/user/{member.pk}/change/").content.decode()

    assert sandbox_airtm["ana"].airtm_id in page
    assert 'name="airtm_user_id"' not in page  # read-only: changed only by the audited service


def test_the_page_refuses_a_post_without_the_csrf_token(member, sandbox_airtm):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(member)

    assert client.post("/wallet/airtm/link/", {"email": "ana@airtm.sandbox"}).status_code == 403
    assert stored(member) == ("", "", None)


def test_the_demo_seed_links_the_buyer_to_the_sandbox_airtm_once(sandbox_airtm, live_server, settings):
    from django.core.management import call_command

    from sandbox.airtm_engine import airtm_user_create
    from sandbox.models import SandboxAirtmUser

    settings.STELLAR_HORIZON_URL = live_server.url + "/sandbox/horizon"
    # The sandbox's migration seeds the demo members' accounts; a flushed test database has none.
    buyer_account = SandboxAirtmUser.objects.filter(email="buyer@demo.offerhub.test").first() or airtm_user_create(
        email="buyer@demo.offerhub.test", first_name="Bea"
    )
    call_command("seed_demo")
    call_command("seed_demo")
    buyer = User.objects.get(email="buyer@demo.offerhub.test")
    assert buyer.airtm_user_id == str(buyer_account.airtm_id) and buyer.airtm_email == buyer.email
    assert not User.objects.get(email="seller@demo.offerhub.test").airtm_user_id  # links their own
    assert AuditLog.objects.filter(action="user.airtm_linked", resource_id=buyer.public_id).count() == 1
