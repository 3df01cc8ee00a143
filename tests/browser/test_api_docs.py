"""The API's interactive docs render in a real browser from our own static files, under our CSP."""

import pytest


@pytest.mark.django_db(transaction=True)
def test_swagger_ui_lists_the_operations_without_a_policy_refusal(page, live_server):
    requested_hosts = set()
    page.on("request", lambda request: requested_hosts.add(request.url.split("/")[2]))
    page.goto(live_server.url + "/api/v1/docs/")
    page.get_by_text("OfferHub API").first.wait_for()
    page.locator(".opblock-summary-path", has_text="/api/v1/orders").first.wait_for()
    assert page.locator(".opblock").count() > 30
    assert requested_hosts == {live_server.url.split("/")[2]}  # nothing from a CDN
